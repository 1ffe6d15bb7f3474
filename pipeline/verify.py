"""`eventcap verify OUT`: check a job's output against what was recorded when each shard was committed.

Checks, each problem one line naming the file:
  shards      every marker (`shard-N.keys.json`) has its tar; the tar's size and sha256 match the marker; the tar
              reads, and its members (names and sizes) are the marker's; each key has its .flac/.json/.txt.
              Markers written before issue 22 carry only keys: those shards get the member check only.
  manifest    every committed shard has its manifest part; every manifest key is in its shard's marker, once
              in the whole output; no committed key is missing from the manifest.
  quarantine  every part reads, has the quarantine schema's columns, and each row has an error and a message.
  cuts        every committed key of a source is one of the segments of that source's committed cut list
              (`OUT/cuts/`, pipeline/cutlist.py), no two cuts of a list overlap, and no two committed segments
              of a source overlap. These problems name no damaged shard: which side is wrong (the list or the
              shards) cannot be told, so `--repair` leaves them to a person. An output written before cut
              lists existed (no `cuts/` folder) gets a note instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.cutlist import CUTS_DIR, CutList
from pipeline.ledger import SHARD_RE
from pipeline.sources import filesystem_for
from schemas.keys import segment_key
from schemas.tables import QUARANTINE_SCHEMA

MEMBER_SUFFIXES = (".flac", ".json", ".txt")
SPAN_COLUMNS = ["key", "shard", "source_sha256", "start_sample", "end_sample"]


@dataclass(frozen=True)
class CommittedSpan:
    """One manifest row, as far as the cut check needs it."""

    key: str
    part: str  # the manifest part it was read from
    sha256: str
    start: int
    end: int


@dataclass
class VerifyReport:
    output: str
    shards_checked: int = 0
    keys_committed: int = 0
    manifest_rows: int = 0
    quarantine_rows: int = 0
    problems: list[str] = field(default_factory=list)
    damaged_shards: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, shard: str | None, text: str) -> None:
        self.problems.append(text)
        if shard:
            self.damaged_shards.add(shard)


class OutputVerifier:
    """Reads an output (any `pyarrow.fs` filesystem) and lists what does not match its commit markers."""

    def __init__(self, output: str):
        self.output = output.rstrip("/")
        self.fs, self.root = filesystem_for(self.output)

    def _files(self, sub: str) -> dict[str, pafs.FileInfo]:
        sel = pafs.FileSelector(f"{self.root}/{sub}", allow_not_found=True)
        return {fi.base_name: fi for fi in self.fs.get_file_info(sel)
                if fi.type == pafs.FileType.File and not fi.base_name.startswith(".")}

    def run(self) -> VerifyReport:
        rep = VerifyReport(self.output)
        if self.fs.get_file_info(self.root).type != pafs.FileType.Directory:
            rep.problem(None, f"{self.output}: no such output directory")
            return rep
        markers = self._check_shards(rep)
        spans = self._check_manifest(rep, markers)
        self._check_quarantine(rep)
        CutListCheck(self.fs, self.root).run(rep, spans)
        return rep

    # ------------------------------------------------------------------ shards
    def _check_shards(self, rep: VerifyReport) -> dict[str, list[str]]:
        files = self._files("shards")
        markers: dict[str, list[str]] = {}
        for name in sorted(files):
            m = SHARD_RE.match(name)
            if not m:
                continue
            shard = m.group(1)
            if m.group(3) == "tar":
                if f"{shard}.keys.json" not in files:
                    rep.notes.append(f"shards/{name}: no commit marker (uncommitted; the next run removes it)")
                continue
            try:
                with self.fs.open_input_stream(files[name].path) as f:
                    marker = json.loads(f.read())
                keys = list(marker["keys"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                rep.problem(shard, f"shards/{name}: unreadable commit marker ({type(e).__name__})")
                continue
            markers[shard] = keys
            rep.shards_checked += 1
            rep.keys_committed += len(keys)
            if f"{shard}.tar" not in files:
                rep.problem(shard, f"shards/{shard}.tar: missing (its marker {name} lists {len(keys)} keys)")
                continue
            self._check_tar(rep, shard, files[f"{shard}.tar"], marker, keys)
        return markers

    def _check_tar(self, rep: VerifyReport, shard: str, info: pafs.FileInfo, marker: dict, keys: list[str]) -> None:
        where = f"shards/{shard}.tar"
        if "tar_bytes" in marker and info.size != marker["tar_bytes"]:
            rep.problem(shard, f"{where}: size {info.size} bytes, marker recorded {marker['tar_bytes']} (truncated?)")
        h = hashlib.sha256()
        with self.fs.open_input_stream(info.path) as f:
            data = f.read()
        h.update(data)
        if "sha256" in marker and h.hexdigest() != marker["sha256"]:
            rep.problem(shard, f"{where}: sha256 {h.hexdigest()[:12]}... does not match the marker's "
                               f"{marker['sha256'][:12]}... (content changed)")
        if "sha256" not in marker:
            rep.notes.append(f"{where}: old marker without checksum; member check only")
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                found = {m.name: m.size for m in tar.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as e:
            rep.problem(shard, f"{where}: not a readable tar ({type(e).__name__}: {e})")
            return
        expected = ({n: s for n, s in marker["members"]} if "members" in marker
                    else {f"{k}{suf}": None for k in keys for suf in MEMBER_SUFFIXES})
        for name in sorted(set(expected) - set(found)):
            rep.problem(shard, f"{where}: member {name} is missing")
        for name in sorted(set(found) - set(expected)):
            rep.problem(shard, f"{where}: member {name} is not in the marker")
        for name in sorted(set(expected) & set(found)):
            if expected[name] is not None and expected[name] != found[name]:
                rep.problem(shard, f"{where}: member {name} is {found[name]} bytes, marker recorded {expected[name]}")

    # ------------------------------------------------------------------ manifest
    def _check_manifest(self, rep: VerifyReport, markers: dict[str, list[str]]) -> list[CommittedSpan]:
        files = self._files("manifest")
        seen: Counter = Counter()
        spans: list[CommittedSpan] = []
        for shard, keys in sorted(markers.items()):
            part = f"{shard}.parquet"
            if part not in files:
                rep.problem(shard, f"manifest/{part}: missing for committed {shard}")
                continue
            try:
                table = pq.read_table(files[part].path, filesystem=self.fs, columns=SPAN_COLUMNS)
            except Exception as e:  # noqa: BLE001 - any unreadable part is a problem to list, not a crash
                rep.problem(shard, f"manifest/{part}: unreadable ({type(e).__name__})")
                continue
            rows = table.to_pylist()
            rep.manifest_rows += len(rows)
            mkeys = [r["key"] for r in rows]
            seen.update(mkeys)
            spans += [CommittedSpan(r["key"], part, r["source_sha256"], r["start_sample"], r["end_sample"])
                      for r in rows]
            for k in sorted(set(keys) - set(mkeys)):
                rep.problem(shard, f"manifest/{part}: key {k} of {shard} is missing")
            for k in sorted(set(mkeys) - set(keys)):
                rep.problem(shard, f"manifest/{part}: key {k} is not in {shard}'s marker")
            if any(r["shard"] != f"{shard}.tar" for r in rows):
                rep.problem(shard, f"manifest/{part}: rows point at another shard than {shard}.tar")
        for name in sorted(files):
            stem = name.split(".")[0]
            if name.endswith(".parquet") and stem not in markers:
                rep.notes.append(f"manifest/{name}: no committed shard (uncommitted; the next run removes it)")
        for k, n in sorted(seen.items()):
            if n > 1:
                rep.problem(None, f"manifest: key {k} appears {n} times")
        return spans

    # ------------------------------------------------------------------ quarantine
    def _check_quarantine(self, rep: VerifyReport) -> None:
        needed = set(QUARANTINE_SCHEMA.names)
        for name, fi in sorted(self._files("quarantine").items()):
            if not name.endswith(".parquet"):
                continue
            try:
                table = pq.read_table(fi.path, filesystem=self.fs)
            except Exception as e:  # noqa: BLE001
                rep.problem(None, f"quarantine/{name}: unreadable ({type(e).__name__})")
                continue
            if missing := needed - set(table.column_names):
                rep.problem(None, f"quarantine/{name}: missing columns {sorted(missing)}")
                continue
            rep.quarantine_rows += table.num_rows
            for r in table.select(["source_uri", "error", "message"]).to_pylist():
                if not r["error"] or not r["message"]:
                    rep.problem(None, f"quarantine/{name}: row for {r['source_uri']!r} has no error or message")


class CutListCheck:
    """The committed keys against the committed cut lists: same cuts, no overlapping audio under two keys."""

    def __init__(self, fs: pafs.FileSystem, root: str):
        self.fs = fs
        self.dir = f"{root}/{CUTS_DIR}"

    def run(self, rep: VerifyReport, spans: list[CommittedSpan]) -> None:
        if self.fs.get_file_info(self.dir).type != pafs.FileType.Directory:
            if spans:
                rep.notes.append(f"{CUTS_DIR}/: none (an output written before cut lists); cut check skipped")
            return
        lists = self._load(rep)
        for cls in lists.values():
            for name, cl in cls:
                self._overlaps(rep, f"{CUTS_DIR}/{name}: cuts", [(c.start, c.end, "") for c in cl.cuts])
        by_source: dict[str, list[CommittedSpan]] = {}
        for s in spans:
            by_source.setdefault(s.sha256, []).append(s)
        for sha, rows in sorted(by_source.items()):
            cls = lists.get(sha, [])
            if not cls:
                rep.problem(None, f"{CUTS_DIR}/: no cut list for source {sha[:12]}... ({len(rows)} committed keys)")
            else:
                allowed = {segment_key(sha, c.start, c.end, cl.segmentation_hash): name
                           for name, cl in cls for c in cl.cuts}
                names = ", ".join(f"{CUTS_DIR}/{n}" for n, _ in cls)
                for s in rows:
                    if s.key not in allowed:
                        rep.problem(None, f"manifest/{s.part}: key {s.key} (source {sha[:12]}..., samples "
                                          f"{s.start}-{s.end}) is not a segment of its cut list {names}")
            self._overlaps(rep, f"manifest: source {sha[:12]}...: keys",
                           [(s.start, s.end, s.key) for s in rows])

    def _load(self, rep: VerifyReport) -> dict[str, list[tuple[str, CutList]]]:
        lists: dict[str, list[tuple[str, CutList]]] = {}
        sel = pafs.FileSelector(self.dir, allow_not_found=True)
        for fi in sorted(self.fs.get_file_info(sel), key=lambda f: f.base_name):
            if fi.type != pafs.FileType.File or fi.base_name.startswith(".") or not fi.base_name.endswith(".json"):
                continue
            try:
                with self.fs.open_input_stream(fi.path) as f:
                    cl = CutList.from_json(f.read())
            except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
                rep.problem(None, f"{CUTS_DIR}/{fi.base_name}: unreadable cut list ({type(e).__name__})")
                continue
            if fi.base_name != f"{cl.source_sha256}-{cl.segmentation_hash}.json":
                rep.problem(None, f"{CUTS_DIR}/{fi.base_name}: holds the cuts of another source or segmentation "
                                  f"({cl.source_sha256[:12]}...-{cl.segmentation_hash})")
                continue
            lists.setdefault(cl.source_sha256, []).append((fi.base_name, cl))
        return lists

    @staticmethod
    def _overlaps(rep: VerifyReport, what: str, spans: list[tuple[int, int, str]]) -> None:
        ordered = sorted(spans)
        for (a0, a1, ka), (b0, b1, kb) in zip(ordered, ordered[1:], strict=False):
            if b0 < a1:
                names = f" {ka} and {kb}" if ka else ""
                rep.problem(None, f"{what}{names} overlap (samples {a0}-{a1} and {b0}-{b1})")


def format_report(rep: VerifyReport) -> str:
    lines = [f"verify {rep.output}: {rep.shards_checked} shards, {rep.keys_committed} committed keys, "
             f"{rep.manifest_rows} manifest rows, {rep.quarantine_rows} quarantine rows"]
    lines += [f"  note: {n}" for n in rep.notes]
    lines += [f"  PROBLEM: {p}" for p in rep.problems]
    lines.append("OK" if rep.ok else f"{len(rep.problems)} problem(s) in {len(rep.damaged_shards)} shard(s)")
    return "\n".join(lines)
