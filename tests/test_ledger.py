"""The control plane at scale: the listing streams, and resume reads a per-source ledger (pipeline/ledger.py)."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ledger import SourceLedger, clean_uncommitted, committed_shard_names, write_sources_done
from pipeline.sources import SourceSpool, iter_sources, list_sources, read_spool_slice


def test_listing_streams_directories_and_every_manifest_kind_each_uri_once(tmp_path):
    d = tmp_path / "corpus"
    (d / "b").mkdir(parents=True)
    for name in ("a.wav", "b/c.flac", "b/notes.pdf", ".hidden.wav"):
        (d / name).write_bytes(b"x")
    (tmp_path / "list.lst").write_text(f"# comment\n{d / 'a.wav'}\n\n{tmp_path / 'gone.wav'}\n")
    (tmp_path / "list.tsv").write_text(f"uri\tduration\n{d / 'b' / 'c.flac'}\t3.0\n{tmp_path / 'x.mp3'}\t1\n")
    pq.write_table(pa.table({"uri": [str(tmp_path / "y.ogg"), str(d / "a.wav")], "n": [1, 2]}),
                   tmp_path / "list.parquet")
    inputs = [str(d), str(tmp_path / "list.lst"), str(tmp_path / "list.tsv"), str(tmp_path / "list.parquet")]
    rows = iter_sources(inputs, ["wav", "flac"])
    assert next(rows)["uri"] == str(d / "a.wav")  # a generator: the first row comes before the rest is listed
    rest = list(rows)
    uris = [str(d / "a.wav")] + [r["uri"] for r in rest]
    assert uris == [str(d / "a.wav"), str(d / "b" / "c.flac"), str(d / "b" / "notes.pdf"),
                    str(tmp_path / "gone.wav"), str(tmp_path / "x.mp3"), str(tmp_path / "y.ogg")]
    by_uri = {r["uri"]: r for r in rest}
    assert by_uri[str(d / "b" / "notes.pdf")]["skip"] == "extension '.pdf' is not in ingest.extensions"
    assert by_uri[str(tmp_path / "gone.wav")]["size_bytes"] == -1 and by_uri[str(tmp_path / "x.mp3")]["skip"] is None
    assert by_uri[str(d / "b" / "c.flac")]["size_bytes"] == 1  # listed from the directory (manifest lines: -1)
    assert [r["uri"] for r in list_sources(inputs, ["wav", "flac"])] == sorted(uris)


def commit_shard(out, name: str, rows: list[tuple[str, str]], marker: bool = True) -> None:
    """A committed shard as the writer leaves it (tar, manifest part, marker); `rows` = [(source_uri, key)]."""
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "manifest").mkdir(parents=True, exist_ok=True)
    (out / "shards" / f"{name}.tar").write_bytes(b"")
    pq.write_table(pa.table({"key": [k for _, k in rows], "source_uri": [u for u, _ in rows]}),
                   out / "manifest" / f"{name}.parquet")
    if marker:
        (out / "shards" / f"{name}.keys.json").write_text(json.dumps({"keys": [k for _, k in rows]}))


def test_resume_state_per_source_from_the_ledger(tmp_path):
    out = tmp_path / "out"
    commit_shard(out, "shard-000000", [("s3://b/a.wav", "a1"), ("s3://b/a.wav", "a2"), ("s3://b/p.wav", "p1")])
    commit_shard(out, "shard-000001", [("s3://b/p.wav", "p3"), ("s3://b/k.wav", "k1")])
    commit_shard(out, "shard-000002", [("s3://b/k.wav", "k2")], marker=False)  # killed before its marker
    write_sources_done(str(out), [{"source_uri": "s3://b/a.wav", "source_sha256": "aa" * 32, "segments": 2},
                                  {"source_uri": "s3://b/p.wav", "source_sha256": "bb" * 32, "segments": 3},
                                  {"source_uri": "s3://b/silent.wav", "source_sha256": "cc" * 32, "segments": 0}])
    write_sources_done(str(out), [{"source_uri": "s3://b/a.wav", "source_sha256": "aa" * 32, "segments": 2}])
    assert sorted(clean_uncommitted(str(out))) == [str(out / "manifest" / "shard-000002.parquet"),
                                                   str(out / "shards" / "shard-000002.tar")]
    assert committed_shard_names(str(out)) == ["shard-000000", "shard-000001"]

    ledger = SourceLedger.load(str(out))
    assert ledger.state("s3://b/a.wav") == "complete"  # all its segments committed: skipped unread
    assert ledger.state("s3://b/silent.wav") == "complete"  # done with no segment (quarantined, all silence)
    assert ledger.state("s3://b/p.wav") == ("p1", "p3")  # 2 of 3: redone, carrying its own keys only
    assert ledger.state("s3://b/k.wav") == ("k1",)  # killed mid-source (no done record), k2 was never committed
    assert ledger.state("s3://b/new.wav") is None
    assert ledger.summary == {"committed_keys": 5, "committed_shards": 2, "complete_sources": 2,
                              "partial_sources": 2}
    earlier = pickle.loads(pickle.dumps(ledger.complete_content()))  # what the ContentRegistry actor gets
    assert "aa" * 32 in earlier and "cc" * 32 in earlier and "bb" * 32 not in earlier
    from pipeline.ledger import _sha256_digests, sha256_digest

    shas = ["aa" * 32, None, "", "abc", "f" * 64]  # the vectorised digest is the scalar one, row by row
    assert _sha256_digests(pa.chunked_array([shas], pa.string())).tolist() == [sha256_digest(s or "") for s in shas]


def test_ledger_and_listing_at_scale_hold_bytes_per_source_not_the_key_set(tmp_path):
    """A scaled-down run of bench/bench_ledger.py (10^6 sources, 10^7 keys there): the same code, known truth."""
    from bench.bench_ledger import make_output, resume_new

    truth = make_output(tmp_path, n_sources=20_000, keys_per_source=10, shard_keys=5_000, partial_every=100,
                        new_every=50)
    stats = resume_new(tmp_path)
    assert stats["counts"]["listed"] == truth["listed"]
    assert stats["counts"]["skipped_already_complete"] == truth["complete"]
    assert stats["counts"]["resumed_partial"] == truth["partial"]
    assert stats["counts"]["processed"] == truth["partial"] + truth["new"]
    assert stats["ledger"]["committed_keys"] == truth["committed_keys"]
    assert stats["max_keys_in_a_row"] == truth["committed_per_partial"]
    assert stats["ledger_bytes"] < 16 * truth["listed"] + 200 * truth["partial"] * truth["committed_per_partial"]
    assert stats["actor_constructor_bytes"] < 10_000  # the segmenter gets the config, not a key set


def test_spool_writes_parts_as_rows_come(tmp_path):
    spool = SourceSpool(str(tmp_path / ".listing-x"), chunk_rows=3)
    for i in range(7):
        spool.add({"payload": str(i)})
    assert len(spool.paths) == 2 and spool.rows == 6
    spool.flush()
    assert spool.rows == 7
    assert pq.read_table(spool.paths).column("payload").to_pylist() == [str(i) for i in range(7)]
    assert spool.slices(3) == [{"path": spool.paths[0], "lo": 0, "hi": 3}, {"path": spool.paths[1], "lo": 0, "hi": 3},
                               {"path": spool.paths[2], "lo": 0, "hi": 1}]
    cut = spool.slices(100)
    assert len(cut) == 7 and [read_spool_slice(**c).column("payload")[0].as_py() for c in cut] == [str(i) for i in range(7)]
    spool.remove()
    assert not (tmp_path / ".listing-x").exists()
