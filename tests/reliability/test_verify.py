"""`eventcap verify`: a clean output passes; truncation, flipped bytes, a deleted member, a lost manifest part and
a broken quarantine part are each named; an old marker (keys only) still reads; `--repair` re-does only the
damaged shard's keys."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
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


# ------------------------------------------------------------------ committed keys against the cut lists
def _rows(out: Path) -> list[dict]:
    cols = ["key", "shard", "source_sha256", "start_sample", "end_sample"]
    return pq.read_table(out / "manifest", columns=cols).to_pylist()


def _a_source(out: Path) -> tuple[Path, dict, dict]:
    """A source's committed cut list and its first committed segment (the hostile corpus's sources are short)."""
    row = min(_rows(out), key=lambda r: (r["source_sha256"], r["start_sample"]))
    (path,) = (out / "cuts").glob(f"{row['source_sha256']}-*.json")
    return path, json.loads(path.read_text()), row


def test_a_moved_cut_and_overlapping_cuts_are_named(copy):
    path, cl, a = _a_source(copy)
    cut = next(c for c in cl["cuts"] if c[0] == a["start_sample"])
    cut[1] -= 160  # the list now says the segment ends 10 ms earlier than the committed key
    cl["cuts"].append([a["start_sample"] + 1600, a["end_sample"] + 1600, "pause", "pause"])  # over it
    path.write_text(json.dumps(cl))
    rep = OutputVerifier(str(copy)).run()
    assert not rep.ok and rep.damaged_shards == set(), "which side is wrong is not known: no shard is uncommitted"
    sha = a["source_sha256"]
    assert (f"manifest/{a['shard'].replace('.tar', '.parquet')}: key {a['key']} (source {sha[:12]}..., samples "
            f"{a['start_sample']}-{a['end_sample']}) is not a segment of its cut list cuts/{path.name}"
            ) in rep.problems, rep.problems
    assert (f"cuts/{path.name}: cuts overlap (samples {a['start_sample']}-{a['end_sample'] - 160} and "
            f"{a['start_sample'] + 1600}-{a['end_sample'] + 1600})") in rep.problems, rep.problems
    assert len(rep.problems) == 2, rep.problems


def test_a_source_cut_twice_two_ways_is_named_by_the_cli(copy):
    """As a resume elsewhere without committed cuts would leave it: the same audio again under another key."""
    from schemas.keys import segment_key

    path, cl, a = _a_source(copy)
    part = copy / "manifest" / a["shard"].replace(".tar", ".parquet")
    table = pq.read_table(part)
    rows = table.to_pylist()
    other = dict(next(r for r in rows if r["key"] == a["key"]))
    other["start_sample"], other["end_sample"] = a["start_sample"] + 8000, a["end_sample"] + 8000
    other["key"] = segment_key(a["source_sha256"], other["start_sample"], other["end_sample"],
                               cl["segmentation_hash"])
    pq.write_table(pa.Table.from_pylist([*rows, other], schema=table.schema), part)
    p = eventcap("verify", str(copy), timeout=120)
    assert p.returncode == 1, p.stdout
    assert (f"PROBLEM: manifest/{part.name}: key {other['key']} (source {a['source_sha256'][:12]}..., samples "
            f"{other['start_sample']}-{other['end_sample']}) is not a segment of its cut list cuts/{path.name}"
            ) in p.stdout
    assert (f"PROBLEM: manifest: source {a['source_sha256'][:12]}...: keys {a['key']} and {other['key']} overlap "
            f"(samples {a['start_sample']}-{a['end_sample']} and {other['start_sample']}-{other['end_sample']})"
            ) in p.stdout


def test_a_lost_cut_list_is_named(copy):
    path, _, a = _a_source(copy)
    path.unlink()
    rep = OutputVerifier(str(copy)).run()
    n = sum(r["source_sha256"] == a["source_sha256"] for r in _rows(copy))
    assert (f"cuts/: no cut list for source {a['source_sha256'][:12]}... ({n} committed keys)") in rep.problems
    assert len(rep.problems) == 1, rep.problems
