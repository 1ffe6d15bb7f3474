"""`eventcap sft`: annotate outputs -> task-oriented SFT data, without running any annotator.

    SFT_OUT/plan.json                   inputs, seed, config and a digest of the segment list (resume guard)
    SFT_OUT/shards/shard-NNNNNN.tar     webdataset: <sample_id>.json (+ <sample_id>.flac with --embed-audio)
    SFT_OUT/index/shard-NNNNNN.parquet  one row per sample (schemas.sft.INDEX_SCHEMA)
    SFT_OUT/jsonl/shard-NNNNNN.jsonl    moss-jsonl: the parts of SFT_OUT/train.jsonl
    SFT_OUT/audio/<key>.wav             moss-jsonl: each referenced segment once, 16 kHz mono
    SFT_OUT/progress/shard-NNNNNN.json  the commit marker of a shard (its counts), written last
    SFT_OUT/report.json                 samples per task, skipped per reason, prompt-variant counts
    SFT_OUT/README.md                   the dataset card: `datasets.load_dataset(SFT_OUT)` reads typed samples
    SFT_OUT/timing.json                 wall time of this run (the one file that differs between runs)

Segments are listed from every input's manifest (committed shards only), sorted by (input, shard, key) and cut
into output shards of `segments_per_shard`; an output shard is a pure function of its segments, the config
and the seed, so a rerun into the same output skips committed shards and rewrites the rest byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.sft.card import card_text
from jobs.sft.generate import Sample, SampleGenerator, Stats
from jobs.sft.prompts import n_variants
from jobs.sft.source import AnnotateOutput, AudioReader, SegmentRef, wav16k
from jobs.sft.tasks import Segment, build_tasks
from pipeline.sources import apply_s3_config
from schemas.annotation import SegmentAnnotation
from schemas.sft import INDEX_SCHEMA
from schemas.sft_config import SftConfig
from schemas.version import SCHEMA_VERSION


class PlanMismatch(RuntimeError):
    """SFT_OUT holds the output of other inputs, config or seed: resuming into it would mix two datasets."""


@dataclass
class SftResult:
    output: str
    report: dict
    timing: dict


def atomic_write(path: Path, data: bytes) -> None:
    """Readers see all of the file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A tar with fixed metadata (mtime 0, root-owned, 0644), so the same members give the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def parquet_bytes(rows: list[dict]) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), buf)
    return buf.getvalue().to_pybytes()


def dumps(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")


class SegmentSource:
    """Annotate outputs -> the sorted, de-duplicated segment list, and `Segment`s for a slice of it."""

    def __init__(self, inputs: list[str], cfg: SftConfig):
        self.outputs = [AnnotateOutput(uri, i) for i, uri in enumerate(inputs)]
        self.cfg = cfg
        self.problems: dict[str, int] = {}
        refs: list[SegmentRef] = []
        seen: set[str] = set()
        for out in self.outputs:
            mine, problems = out.segments()
            for k, v in problems.items():
                self.problems[k] = self.problems.get(k, 0) + v
            for r in mine:
                if r.key in seen:  # the same segment annotated into two outputs: the first one's is used
                    self.problems["duplicate_key"] = self.problems.get("duplicate_key", 0) + 1
                    continue
                seen.add(r.key)
                refs.append(r)
        self.refs = refs
        self.tables = [out.caption_table(cfg.caption_table) for out in self.outputs] if cfg.caption_table else None
        self._cache: tuple[tuple[int, str], dict] | None = None

    def digest(self) -> str:
        h = hashlib.sha256()
        for r in self.refs:
            h.update(f"{r.output_index}:{r.shard}:{r.key}\n".encode())
        return h.hexdigest()

    def _annotations(self, ref: SegmentRef) -> dict:
        ident = (ref.output_index, ref.shard)
        if self._cache is None or self._cache[0] != ident:
            try:
                anns = self.outputs[ref.output_index].read_annotations(ref.shard)
            except (OSError, tarfile.TarError) as e:  # its segments are counted as shard_unreadable
                anns = {"__error__": e}
            self._cache = (ident, anns)
        return self._cache[1]

    def segment(self, ref: SegmentRef, stats: Stats) -> Segment | None:
        """The Segment of `ref`, or None (counted in `stats.segment_errors`)."""
        anns = self._annotations(ref)
        if "__error__" in anns:
            stats.segment_errors["shard_unreadable"] += 1
            return None
        ann = anns.get(ref.key)
        if ann is None:
            stats.segment_errors["shard_json_missing"] += 1
            return None
        if not isinstance(ann, SegmentAnnotation):
            stats.segment_errors["shard_json_invalid"] += 1
            return None
        out = self.outputs[ref.output_index]
        seg = Segment(ann, out.ref_root, ref.shard, ann.caption, getattr(ann, "short_caption", None))
        if self.tables is not None:
            row = self.tables[ref.output_index].get(ref.key) or {"caption": "", "short_caption": None}
            seg.caption, seg.short_caption = row["caption"], row["short_caption"]
            seg.caption_source, seg.caption_missing = f"table:{self.cfg.caption_table}", "caption_table_missing_key"
        return seg


class SftWriter:
    """Writes one output shard (tar or jsonl part, audio, index) and then its commit marker."""

    def __init__(self, root: Path, cfg: SftConfig, source: SegmentSource):
        self.root, self.cfg, self.source = root, cfg, source
        self.audio = AudioReader(source.outputs)

    def committed(self, name: str) -> Stats | None:
        marker = self.root / "progress" / f"{name}.json"
        if not marker.exists():
            return None
        return Stats.from_json(json.loads(marker.read_text())["stats"])

    def write(self, name: str, refs: list[SegmentRef], samples: list[Sample], stats: Stats) -> None:
        moss = self.cfg.format == "moss-jsonl"
        ref_of = {r.key: r for r in refs}
        audio_path: dict[str, str | None] = {}
        for s in samples:
            if s.seg.key not in audio_path:
                audio_path[s.seg.key] = self._wav(ref_of[s.seg.key]) if moss else None
        rows = [s.index_row(name, audio_path[s.seg.key]) for s in samples]
        if moss:
            lines = [json.dumps({"conversation": [
                {"role": "user", "message_type": "audio", "content": audio_path[s.seg.key]},
                {"role": "user", "message_type": "text", "content": s.prompt},
                {"role": "assistant", "message_type": "text", "content": s.messages()[1]["content"]}]},
                ensure_ascii=False) + "\n" for s in samples]
            atomic_write(self.root / "jsonl" / f"{name}.jsonl", "".join(lines).encode("utf-8"))
        else:
            members = []
            for s in samples:
                members.append((f"{s.sample_id}.json", dumps(s.record(name, None))))
                if self.cfg.embed_audio:
                    members.append((f"{s.sample_id}.flac", self.audio.flac(ref_of[s.seg.key])))
            atomic_write(self.root / "shards" / f"{name}.tar", tar_bytes(members))
        atomic_write(self.root / "index" / f"{name}.parquet", parquet_bytes(rows))
        marker = {"shard": name, "segments": [r.key for r in refs], "samples": len(samples), "stats": stats.to_json()}
        atomic_write(self.root / "progress" / f"{name}.json", dumps(marker))

    def _wav(self, ref: SegmentRef) -> str:
        path = self.root / "audio" / f"{ref.key}.wav"
        if not path.exists():
            atomic_write(path, wav16k(self.audio.flac(ref)))
        return str(path)

    def close(self) -> None:
        self.audio.close()


def clean_temp(root: Path) -> None:
    for sub in ("shards", "index", "jsonl", "audio", "progress", "."):
        d = root / sub
        if d.is_dir():
            for p in d.glob(".tmp-*"):
                p.unlink()


def check_plan(root: Path, plan: dict) -> None:
    path = root / "plan.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise PlanMismatch(f"{root} holds SFT data made from other {', '.join(diff)}; write to a new --output "
                               "(or delete it) instead of mixing two datasets")
        return
    atomic_write(path, dumps(plan))


def build_report(inputs: list[str], cfg: SftConfig, stats: Stats, n_shards: int, problems: dict) -> dict:
    s = stats.to_json()
    by_reason: dict[str, int] = {}
    for reasons in s["skipped"].values():
        for r, n in reasons.items():
            by_reason[r] = by_reason.get(r, 0) + n
    return {
        "inputs": inputs, "format": cfg.format, "seed": cfg.seed, "embed_audio": cfg.embed_audio,
        "weights": cfg.weights(), "shards": n_shards,
        "segments": {"listed": s["segments"] + sum(s["segment_errors"].values()), "used": s["segments"],
                     "with_samples": s["segments_with_samples"], "errors": s["segment_errors"],
                     "input_problems": dict(sorted(problems.items()))},
        "samples": s["samples"], "total_samples": sum(s["samples"].values()),
        "eligible": s["eligible"], "not_applicable": s["not_applicable"],
        "skipped": s["skipped"], "skipped_by_reason": dict(sorted(by_reason.items())),
        "variants": s["variants"],
        "prompt_variants": {t: {"available": n_variants(t), "used": len(c), "counts": c}
                            for t, c in s["prompts"].items()},
        "schema_version": SCHEMA_VERSION,
    }


def run_sft(inputs: list[str], output: str, cfg: SftConfig, log=print) -> SftResult:
    t0 = time.time()
    apply_s3_config(cfg.s3)
    root = Path(output).resolve()
    root.mkdir(parents=True, exist_ok=True)
    clean_temp(root)
    source = SegmentSource(inputs, cfg)
    refs = source.refs
    names = [o.ref_root for o in source.outputs]
    check_plan(root, {"inputs": names, "seed": cfg.seed, "config": cfg.model_dump(mode="json", exclude={"s3"}),
                      "segments": len(refs), "segments_digest": source.digest(), "schema_version": SCHEMA_VERSION})
    generator = SampleGenerator(cfg, build_tasks(cfg))
    writer = SftWriter(root, cfg, source)
    total, new_samples, resumed = Stats(), 0, 0
    per = cfg.segments_per_shard
    n_shards = (len(refs) + per - 1) // per
    try:
        for i in range(n_shards):
            name = f"shard-{i:06d}"
            chunk = refs[i * per:(i + 1) * per]
            done = writer.committed(name)
            if done is not None:
                total.merge(done)
                resumed += 1
                continue
            stats, samples = Stats(), []
            for ref in chunk:
                seg = source.segment(ref, stats)
                if seg is not None:
                    samples += generator.samples(seg, stats)
            writer.write(name, chunk, samples, stats)
            total.merge(stats)
            new_samples += len(samples)
    finally:
        writer.close()
    if cfg.format == "moss-jsonl":
        parts = [(root / "jsonl" / f"shard-{i:06d}.jsonl").read_bytes() for i in range(n_shards)]
        atomic_write(root / "train.jsonl", b"".join(parts))
    report = build_report(names, cfg, total, n_shards, source.problems)
    atomic_write(root / "report.json", json.dumps(report, indent=1, sort_keys=True).encode())
    atomic_write(root / "README.md", card_text(cfg, report).encode("utf-8"))
    wall = time.time() - t0
    timing = {"wall_s": round(wall, 3), "samples_written": new_samples, "shards_written": n_shards - resumed,
              "shards_resumed": resumed,
              "s_per_1000_samples": round(1000 * wall / new_samples, 3) if new_samples else None}
    atomic_write(root / "timing.json", json.dumps(timing, indent=1).encode())
    return SftResult(str(root), report, timing)
