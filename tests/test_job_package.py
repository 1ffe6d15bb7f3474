"""What `eventcap submit` ships (no cluster needed): the package, the lock, config files, no secrets; and the
lock check that runs first in every job."""

from __future__ import annotations

from importlib import metadata

from jobs.lockcheck import Mismatch, check, main, read_pins
from jobs.remote import JobPackage


def test_package_carries_source_lock_and_config_files_and_no_secret(tmp_path, monkeypatch):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("segmenter:\n  max_segment_s: 9\n")
    lock = tmp_path / "pins.lock"
    lock.write_text("numpy==1.0\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-ship")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    pkg = JobPackage(["annotate", "s3://b/in", "--output", "s3://b/out", "--config", str(cfg), "--set", "a=1"], lock)
    try:
        assert pkg.command == ["annotate", "s3://b/in", "--output", "s3://b/out", "--config", "submitted/0-job.yaml",
                               "--set", "a=1"]
        assert (pkg.dir / "submitted" / "0-job.yaml").read_text() == cfg.read_text()
        assert (pkg.dir / "requirements.lock").read_text() == "numpy==1.0\n"
        assert (pkg.dir / "stages" / "shard_writer.py").is_file() and (pkg.dir / "jobs" / "cli.py").is_file()
        assert not list(pkg.dir.rglob("__pycache__"))
        assert pkg.entrypoint() == ("python -m jobs.lockcheck requirements.lock && python -m jobs.cli annotate "
                                    "s3://b/in --output s3://b/out --config submitted/0-job.yaml --set a=1")
        env = pkg.runtime_env()
        assert env["working_dir"] == str(pkg.dir)
        assert env["env_vars"]["AWS_REGION"] == "eu-west-1" and "AWS_SECRET_ACCESS_KEY" not in env["env_vars"]
        assert "do-not-ship" not in str(env)
    finally:
        pkg.cleanup()
    assert not pkg.dir.exists()


def test_a_config_name_that_is_not_a_local_file_is_passed_as_it_is(tmp_path):
    pkg = JobPackage(["train", "--config", "tiny", "--data", "x"], None)
    try:
        assert pkg.command == ["train", "--config", "tiny", "--data", "x"]
        assert not (pkg.dir / "submitted").exists()
    finally:
        pkg.cleanup()


def test_lock_check_names_every_difference(tmp_path, capsys):
    np_version = metadata.version("numpy")
    text = (f"# a comment\n-e .\nnumpy=={np_version} \\\n    --hash=sha256:abc\npyyaml==0.0.1\n"
            "not-installed-package-xyz==1.2\neventcap==0.1.0\nwinonly==1.0 ; sys_platform == 'win32'\n")
    pins = read_pins(text)
    assert pins == {"numpy": np_version, "pyyaml": "0.0.1", "not-installed-package-xyz": "1.2"}
    assert check(pins) == [Mismatch("not-installed-package-xyz", "1.2", None),
                           Mismatch("pyyaml", "0.0.1", metadata.version("pyyaml"))]
    lock = tmp_path / "requirements.lock"
    lock.write_text(text)
    assert main([str(lock)]) == 3
    err = capsys.readouterr().err
    assert "2 of 3 packages differ" in err and "not-installed-package-xyz: locked 1.2, installed nothing" in err
    lock.write_text(f"numpy=={np_version}\n")
    assert main([str(lock)]) == 0
