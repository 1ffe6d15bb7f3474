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


def _two_segment_source(out: Path) -> tuple[Path, dict, list[dict]]:
    """The cut list of a source with at least two committed segments, and those segments in order."""
    by_sha: dict[str, list[dict]] = {}
    for r in _rows(out):
        by_sha.setdefault(r["source_sha256"], []).append(r)
    sha, rows = next((s, sorted(r, key=lambda r: r["start_sample"])) for s, r in sorted(by_sha.items())
                     if len(r) >= 2)
    (path,) = (out / "cuts").glob(f"{sha}-*.json")
    return path, json.loads(path.read_text()), rows


def test_a_moved_cut_and_overlapping_cuts_are_named(copy):
    path, cl, rows = _two_segment_source(copy)
    first = next(c for c in cl["cuts"] if c[0] == rows[0]["start_sample"])
    first[1] -= 160  # the list now says the first segment ends 10 ms earlier than the committed key
    cl["cuts"].append([rows[0]["start_sample"], rows[1]["end_sample"], "pause", "pause"])  # a cut over two
    path.write_text(json.dumps(cl))
    rep = OutputVerifier(str(copy)).run()
    assert not rep.ok and rep.damaged_shards == set(), "which side is wrong is not known: no shard is uncommitted"
    sha = rows[0]["source_sha256"]
    assert any(f"key {rows[0]['key']} (source {sha[:12]}..., samples {rows[0]['start_sample']}-"
               f"{rows[0]['end_sample']}) is not a segment of its cut list cuts/{path.name}" in p
               for p in rep.problems), rep.problems
    assert any(p.startswith(f"cuts/{path.name}: cuts overlap (samples {rows[0]['start_sample']}-") for p in rep.problems)
    assert not any(rows[1]["key"] in p for p in rep.problems), "the untouched segment is fine"


def test_a_source_cut_twice_two_ways_is_named_by_the_cli(copy):
    """As a resume elsewhere would leave it without committed cuts: the same audio under a second key."""
    from schemas.keys import segment_key

    path, cl, rows = _two_segment_source(copy)
    a, b = rows[0], rows[1]
    part = copy / "manifest" / a["shard"].replace(".tar", ".parquet")
    table = pq.read_table(part)
    moved = table.to_pylist()
    seg_hash = cl["segmentation_hash"]
    for r in moved:
        if r["key"] == a["key"]:  # the first segment, cut further on: over the start of the second
            r["end_sample"] = b["start_sample"] + 16000
            r["key"] = segment_key(a["source_sha256"], r["start_sample"], r["end_sample"], seg_hash)
    pq.write_table(pa.Table.from_pylist(moved, schema=table.schema), part)
    p = eventcap("verify", str(copy), timeout=120)
    assert p.returncode == 1, p.stdout
    new_key = moved[[r["start_sample"] for r in moved].index(a["start_sample"])]["key"]
    assert f"is not a segment of its cut list cuts/{path.name}" in p.stdout and new_key in p.stdout
    assert (f"PROBLEM: manifest: source {a['source_sha256'][:12]}...: keys {new_key} and {b['key']} overlap "
            f"(samples {a['start_sample']}-{b['start_sample'] + 16000} and {b['start_sample']}-{b['end_sample']})"
            ) in p.stdout


def test_a_lost_cut_list_is_named(copy):
    path, _, rows = _two_segment_source(copy)
    path.unlink()
    rep = OutputVerifier(str(copy)).run()
    sha = rows[0]["source_sha256"]
    assert [p for p in rep.problems if p.startswith(f"cuts/: no cut list for source {sha[:12]}...")], rep.problems
