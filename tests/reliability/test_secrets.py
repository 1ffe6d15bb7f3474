"""Credentials planted in the environment and the config never show up in what jobs write or print."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.redact import MASK, redact_config, redact_text
from schemas.config import ConfigError, load_config
from tests.reliability.conftest import SECRETS, eventcap

LEAKS = [*SECRETS.values()]


def leaks_in(text: str) -> list[str]:
    return [s for s in LEAKS if s in text]


def written_text(root: Path) -> str:
    parts = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            parts.append(Path(dirpath, f).read_bytes().decode("latin-1"))
    return "\n".join(parts)


@pytest.mark.slow
def test_hostile_job_writes_and_prints_no_secret(hostile_run):
    p = hostile_run.proc
    assert leaks_in(p.stdout + p.stderr) == []
    assert leaks_in(written_text(hostile_run.out)) == []  # shards, manifest, quarantine, report.json


def test_bad_config_errors_do_not_echo_secrets(tmp_path):
    secret = SECRETS["OPENAI_API_KEY"]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(f'caption:\n  api_key: "{secret}\n  model: [unclosed\n')
    p = eventcap("annotate", str(tmp_path), "--output", str(tmp_path / "out"), "--config", str(bad_yaml), timeout=120)
    assert p.returncode == 2 and "not valid YAML at line" in p.stderr, p.stderr
    assert leaks_in(p.stdout + p.stderr) == []
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError) as e:  # the same messages the command line prints
        load_config(None, [f"caption.api_key={secret}", f"ingest.sample_rate={SECRETS['AWS_SECRET_ACCESS_KEY']}"])
    assert "caption" in str(e.value) and "ingest.sample_rate" in str(e.value)
    assert leaks_in(str(e.value)) == []


def test_report_config_masks_credential_keys():
    cfg = {"caption": {"api_key": "sk-123456", "model": "m", "llm": {"base_url": "http://x", "token": "t0k3n!"}},
           "s3": {"aws_secret_access_key": "abc123", "region": "eu"}, "ingest": {"extensions": ["wav"]}}
    red = redact_config(cfg)
    assert red["caption"]["api_key"] == MASK and red["caption"]["llm"]["token"] == MASK
    assert red["s3"]["aws_secret_access_key"] == MASK and red["s3"]["region"] == "eu"
    assert red["caption"]["model"] == "m" and red["ingest"] == cfg["ingest"]
    assert MASK not in json.dumps(redact_config({"api_key": None}))


def test_quarantine_messages_mask_environment_secrets(monkeypatch):
    from schemas.annotation import QuarantineRecord
    from schemas.errors import ErrorClass
    from stages.rows import quarantine_row

    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    err = f"PUT s3://b/k failed: signature for key {SECRETS['AWS_SECRET_ACCESS_KEY']} rejected"
    rec = QuarantineRecord.model_validate_json(quarantine_row("s3://b/k", "write", ErrorClass.STAGE_FAILED, err).payload)
    assert leaks_in(rec.message) == [] and MASK in rec.message
    assert redact_text("ok", {"PATH": "/usr/bin"}) == "ok"
