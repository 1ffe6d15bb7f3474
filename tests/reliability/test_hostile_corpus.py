"""The hostile corpus through `eventcap annotate`: every input annotated or quarantined with a reason, the same
bytes annotated once, exit 0, nothing written outside OUT, the stale lease taken over, `verify` clean."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.verify import OutputVerifier
from tests.reliability.conftest import tree_snapshot

pytestmark = pytest.mark.slow  # the session fixture runs the job once (~1 min on a loaded 2-core machine)

REASON_WORDS = {  # the quarantine message must name the problem
    "EmptyFile": "empty", "NotAudio": "not a readable audio", "DecodeError": "decod", "TooShort": "under",
    "NonFiniteSamples": "nan or inf", "AllSilence": "no audible", "NotFound": "no such file",
    "BrokenSymlink": "symlink loop or dangling", "SymlinkOutsideInput": "out of the input",
    "SymlinkedDirectory": "not followed", "DuplicateContent": "same bytes",
}


def outcomes(out: Path) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, str]]]]:
    m = pq.read_table(out / "manifest", columns=["key", "source_uri"]).to_pylist()
    q = pq.read_table(out / "quarantine").to_pylist()
    keys: dict[str, set[str]] = {}
    for r in m:
        keys.setdefault(r["source_uri"], set()).add(r["key"])
    errs: dict[str, list[tuple[str, str]]] = {}
    for r in q:
        errs.setdefault(r["source_uri"], []).append((r["error"], r["message"]))
    return keys, errs


def test_job_exits_0_and_takes_over_the_stale_lease(hostile_run):
    p = hostile_run.proc
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"took over a stale lease on {hostile_run.out}: PID {hostile_run.stale_pid}" in p.stdout
    assert not (hostile_run.out / ".eventcap.lease").exists(), "the lease is released at the end"


def test_every_input_is_annotated_or_quarantined_with_a_named_reason(hostile_run):
    keys, errs = outcomes(hostile_run.out)
    dup_names = {"dup_a.wav", "dup_b.wav"}
    for uri, want in hostile_run.expected.items():
        name = Path(uri).name
        if name in dup_names:
            continue
        allowed = set(want.split("|"))
        got = set()
        if uri in keys:
            got.add("annotated")
        for error, message in errs.get(uri, []):
            got.add(error)
            assert REASON_WORDS[error] in message.lower(), (name, error, message)
            assert "<pyarrow" not in message and "<none>" not in message, message  # no object reprs
        assert got and got <= allowed, f"{name!r}: expected {want}, got {got} {errs.get(uri)}"
    # the same bytes under two names: annotated once, the other named as a duplicate of it
    a, b = (next(u for u in hostile_run.expected if Path(u).name == n) for n in sorted(dup_names))
    annotated = [u for u in (a, b) if u in keys]
    assert len(annotated) == 1, (keys.get(a), keys.get(b))
    other = b if annotated[0] == a else a
    assert [e for e, _ in errs[other]] == ["DuplicateContent"] and annotated[0] in errs[other][0][1]
    # nothing else turned up: every source in the output was an input we know
    assert set(keys) | set(errs) <= set(hostile_run.expected)


def test_keys_are_unique_and_verify_passes(hostile_run):
    keys = pq.read_table(hostile_run.out / "manifest", columns=["key"]).column("key").to_pylist()
    assert len(keys) == len(set(keys)) >= 8
    rep = OutputVerifier(str(hostile_run.out)).run()
    assert rep.ok and rep.manifest_rows == len(keys), rep.problems


def test_nothing_is_written_outside_out(hostile_run):
    after = tree_snapshot(hostile_run.root)
    changed = {p for p in set(after) | set(hostile_run.before)
               if after.get(p) != hostile_run.before.get(p) and not p.startswith(str(hostile_run.out) + os.sep)}
    assert changed == set()
