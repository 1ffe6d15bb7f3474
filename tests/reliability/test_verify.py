"""`eventcap verify`: a clean output passes; truncation, flipped bytes, a deleted member, a lost manifest part and
a broken quarantine part are each named; an old marker (keys only) still reads; `--repair` re-does only the
damaged shard's keys."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.verify import OutputVerifier
from tests.reliability.conftest import FAST, eventcap

pytestmark = pytest.mark.slow  # needs the session's hostile run


@pytest.fixture
def copy(hostile_run, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(hostile_run.out, out, symlinks=True)
    return out


def shards(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("shard-*.tar"))


def marker(tar: Path) -> dict:
    return json.loads(tar.with_name(tar.name.replace(".tar", ".keys.json")).read_text())


def test_clean_output_passes(copy):
    rep = OutputVerifier(str(copy)).run()
    assert rep.ok, rep.problems
    assert rep.shards_checked == len(shards(copy)) >= 3
    assert rep.keys_committed == rep.manifest_rows == pq.read_table(copy / "manifest").num_rows
    assert rep.quarantine_rows == pq.read_table(copy / "quarantine").num_rows > 0


def test_truncated_shard_is_named(copy):
    tar = shards(copy)[1]
    tar.write_bytes(tar.read_bytes()[:-3000])
    rep = OutputVerifier(str(copy)).run()
    assert rep.damaged_shards == {tar.stem}
    assert any(f"shards/{tar.name}: size" in p and "truncated" in p for p in rep.problems), rep.problems


def test_flipped_bytes_are_named(copy):
    tar = shards(copy)[0]
    data = bytearray(tar.read_bytes())
    for i in range(1000, 1016):  # inside the first member's FLAC payload: the tar still reads
        data[i] ^= 0xFF
    tar.write_bytes(bytes(data))
    rep = OutputVerifier(str(copy)).run()
    assert rep.damaged_shards == {tar.stem}
    assert [p for p in rep.problems if "sha256" in p and tar.name in p], rep.problems


def _rewrite_without(tar: Path, drop: str) -> None:
    with tarfile.open(tar) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers() if m.name != drop]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for m, data in members:
            dst.addfile(m, io.BytesIO(data))
    tar.write_bytes(buf.getvalue())


def test_deleted_member_is_named_by_the_cli(copy):
    tar = shards(copy)[-1]
    key = marker(tar)["keys"][0]
    _rewrite_without(tar, f"{key}.json")
    p = eventcap("verify", str(copy), timeout=120)
    assert p.returncode == 1, p.stdout
    assert f"PROBLEM: shards/{tar.name}: member {key}.json is missing" in p.stdout
    assert "1 shard(s)" in p.stdout


def test_manifest_and_quarantine_damage_is_named(copy):
    tar = shards(copy)[0]
    (copy / "manifest" / f"{tar.stem}.parquet").unlink()
    q = sorted((copy / "quarantine").glob("*.parquet"))[0]
    q.write_bytes(b"not parquet")
    rep = OutputVerifier(str(copy)).run()
    assert f"manifest/{tar.stem}.parquet: missing for committed {tar.stem}" in rep.problems
    assert f"quarantine/{q.name}: unreadable (ArrowInvalid)" in rep.problems


def test_old_marker_without_checksums_still_verifies(copy):
    tar = shards(copy)[0]
    m = marker(tar)
    old = {"shard": m["shard"], "keys": m["keys"], "audio_s": m["audio_s"]}
    tar.with_name(f"{tar.stem}.keys.json").write_text(json.dumps(old))
    rep = OutputVerifier(str(copy)).run()
    assert rep.ok, rep.problems
    assert any("old marker" in n for n in rep.notes)
    _rewrite_without(tar, f"{m['keys'][0]}.flac")
    assert OutputVerifier(str(copy)).run().damaged_shards == {tar.stem}


def test_repair_redoes_only_the_damaged_shards_keys(copy, hostile_run):
    tars = shards(copy)
    damaged = tars[len(tars) // 2]
    lost = set(marker(damaged)["keys"])
    kept = {t.name: t.read_bytes() for t in tars if t != damaged}
    damaged.write_bytes(damaged.read_bytes()[:1000])
    keys_before = set(pq.read_table(copy / "manifest").column("key").to_pylist())

    p = eventcap("annotate", *hostile_run.inputs, "--output", str(copy), *FAST, "--repair")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"repaired:   re-did the keys of {damaged.stem}" in p.stdout
    report = json.loads((copy / "report.json").read_text())
    assert report["repaired_shards"] == [damaged.stem]
    assert report["segments"]["written"] == len(lost)
    assert {t.name: t.read_bytes() for t in shards(copy) if t.name in kept} == kept, "other shards untouched"
    keys_after = pq.read_table(copy / "manifest").column("key").to_pylist()
    assert sorted(keys_after) == sorted(keys_before) and len(set(keys_after)) == len(keys_after)
    assert OutputVerifier(str(copy)).run().ok
