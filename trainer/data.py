"""Shards -> packed, padded training batches.

Two shard kinds are read, mixed in one stream (WebDataset tars, read with the `webdataset` library):

  annotate  <key>.flac (16 kHz mono), <key>.json (a SegmentAnnotation), <key>.txt (the unified caption).
            Each sample becomes one task, drawn by `task_weights` among those it supports:
              caption  prompt "Describe the audio." -> the unified caption
              asr      prompt "Transcribe ... timestamps." -> "[0.52-0.9] hello ..." (schemas.timemarkers);
                       only for samples with timed words
  sft       <key>.json {"messages": [{"role", "content"}...], "task": ..., "audio_ref"} (`eventcap sft`) and,
            with --embed-audio, <key>.flac. The audio span opens the first user turn (or replaces "<audio>"
            in it); loss is on every assistant turn. Without its own .flac, the audio is read from the
            annotate shard `audio_ref` names ("OUT/shards/shard-N.tar#KEY", trainer/audio_refs.py); a
            sample whose audio resolves nowhere is skipped and counted (`counters["sft_no_audio"]`), and
            a warning is logged once.

Order and splitting. The shard list is shuffled per epoch with (seed, epoch), then split so every
(rank, worker) reads different shards (when there are fewer shards than readers, every reader reads all
shards and keeps every n-th sample). A seeded buffer shuffles samples inside a reader. Each sample's task
and prompt come from an RNG seeded by (seed, epoch, key). So the stream is a pure function of
(shards, seed, rank, world size, workers): the data position saved in a checkpoint is the number of
batches consumed, and resuming replays the stream's *plans* (token ids, no audio decoding) up to there.

Batches. Examples are packed in order into rows of at most `max_seq_len` tokens (positions restart at 0
for each sample, which the decoder turns into a block-diagonal mask); `tokens_per_batch // max_seq_len`
rows make a batch, padded to its longest row.
"""

from __future__ import annotations

import glob
import io
import itertools
import json
import logging
import math
import os
import random
from collections import Counter
from dataclasses import dataclass

import braceexpand
import soundfile as sf
import torch
import torchaudio
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from schemas.timemarkers import format_timestamped_words
from trainer.audio_refs import RESOLVER
from trainer.model.features import SAMPLE_RATE, n_audio_frames
from trainer.sequence import IGNORE, build_chat
from trainer.tokenizer import PAD

log = logging.getLogger(__name__)

CAPTION_PROMPTS = ("Describe the audio.", "What do you hear?", "Write a caption for this audio.")
ASR_PROMPTS = ("Transcribe the speech with word timestamps.",)


def expand_data(specs: list[str]) -> list[str]:
    """Shard dirs (their shard-*.tar, else *.tar), brace patterns, globs or files -> sorted shard paths."""
    shards: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(glob.glob(os.path.join(spec, "shard-*.tar"))) or sorted(
                glob.glob(os.path.join(spec, "*.tar")))
            if not found and os.path.isdir(os.path.join(spec, "shards")):
                found = sorted(glob.glob(os.path.join(spec, "shards", "*.tar")))
        else:
            found = [p for pat in braceexpand.braceexpand(spec) for p in (sorted(glob.glob(pat)) or [pat])]
        if not found:
            raise FileNotFoundError(f"no shards in {spec!r}")
        shards += found
    return shards


def load_caption_table(shards: list[str], name: str) -> dict[str, str]:
    """{segment key: caption} from OUT/captions/NAME/*.parquet of every annotate output the shards come from
    (`eventcap recaption OUT --name NAME`; a shard OUT/shards/shard-N.tar belongs to OUT)."""
    import pyarrow.parquet as pq

    roots = {os.path.dirname(os.path.dirname(os.path.abspath(s))) if os.path.basename(os.path.dirname(
        os.path.abspath(s))) == "shards" else os.path.dirname(os.path.abspath(s)) for s in shards}
    table: dict[str, str] = {}
    found = []
    for root in sorted(roots):
        parts = sorted(glob.glob(os.path.join(root, "captions", name, "*.parquet")))
        found += parts
        for p in parts:
            t = pq.read_table(p, columns=["key", "caption"])
            table.update(zip(t.column("key").to_pylist(), t.column("caption").to_pylist(), strict=True))
    if not found:
        raise FileNotFoundError(f"no caption table {name!r} under {sorted(roots)} (run `eventcap recaption OUT "
                                f"--name {name}` first)")
    return table


@dataclass
class Example:
    key: str
    task: str
    ids: list[int]
    labels: list[int]
    flac: bytes
    n_samples: int  # at 16 kHz
    epoch: int = 0


def audio_length(flac: bytes) -> tuple[int, int]:
    """(samples at 16 kHz, native rate), from the header only."""
    info = sf.info(io.BytesIO(flac))
    n = info.frames if info.samplerate == SAMPLE_RATE else math.ceil(info.frames * SAMPLE_RATE / info.samplerate)
    return n, info.samplerate


def decode_audio(flac: bytes, n_samples: int) -> torch.Tensor:
    """FLAC bytes -> (n_samples,) float32 mono at 16 kHz."""
    data, sr = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data).mean(dim=1)  # (S,)
    if sr != SAMPLE_RATE:
        wav = torchaudio.functional.resample(wav, sr, SAMPLE_RATE)
    out = torch.zeros(n_samples)
    out[: min(n_samples, wav.numel())] = wav[:n_samples]
    return out


def pick(rng: random.Random, weights: dict[str, float]) -> str | None:
    weights = {k: w for k, w in weights.items() if w > 0}
    if not weights:
        return None
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_example(sample: dict, tok, task_weights: dict[str, float], marker_interval_s: float | None,
                 rng: random.Random, counters: Counter, captions: dict[str, str] | None = None) -> Example | None:
    """One raw shard sample (dict of member bytes) -> an Example, or None (counted in `counters`)."""
    key = sample["__key__"]
    if "json" not in sample:
        counters["no_json"] += 1
        return None
    meta = json.loads(sample["json"])
    flac = sample.get("flac")
    if "messages" in meta:  # an SFT conversation
        if flac is None and meta.get("audio_ref"):
            flac = RESOLVER.flac(meta["audio_ref"])
        if flac is None:
            if counters["sft_no_audio"] == 0:
                log.warning("SFT sample %s has no .flac of its own and no resolvable audio_ref: skipped "
                            "(counted as sft_no_audio)", key)
            counters["sft_no_audio"] += 1
            return None
        if task_weights.get("sft", 0) <= 0:
            counters["task_off"] += 1
            return None
        task, messages = "sft", meta["messages"]
    else:  # an annotate segment
        if flac is None:
            counters["no_audio"] += 1
            return None
        caption = (sample["txt"].decode("utf-8") if "txt" in sample else meta.get("caption", "")).strip()
        if captions is not None:  # a named caption table replaces <key>.txt; a key it lacks has no caption task
            caption = captions.get(key, "").strip()
            if not caption:
                counters["caption_not_in_table"] += 1
        words = (meta.get("speech") or {}).get("words") or []
        task = pick(rng, {"caption": task_weights.get("caption", 0) if caption else 0,
                          "asr": task_weights.get("asr", 0) if words else 0})
        if task is None:
            counters["no_task"] += 1
            return None
        if task == "caption":
            prompt, target = rng.choice(CAPTION_PROMPTS), caption
        else:
            prompt, target = rng.choice(ASR_PROMPTS), format_timestamped_words(words)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}]
    n_samples, _ = audio_length(flac)
    ids, labels = build_chat(tok, messages, n_audio_frames(n_samples), marker_interval_s)
    counters[task] += 1
    return Example(key, task, ids, labels, flac, n_samples)


def collate(rows: list[list[Example]], pad_id: int) -> dict:
    """Packed rows -> tensors. Audio is decoded here, in the order its spans appear (row-major)."""
    T = max(sum(len(e.ids) for e in row) for row in rows)
    B = len(rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    examples = [e for row in rows for e in row]
    for b, row in enumerate(rows):
        t = 0
        for e in row:
            n = len(e.ids)
            input_ids[b, t:t + n] = torch.tensor(e.ids)
            labels[b, t:t + n] = torch.tensor(e.labels)
            position_ids[b, t:t + n] = torch.arange(n)
            t += n
        position_ids[b, t:] = torch.arange(T - t)  # padding: its own "sequence", after the real ones
    lengths = torch.tensor([e.n_samples for e in examples])
    wav = torch.zeros(len(examples), int(lengths.max()))
    for i, e in enumerate(examples):
        wav[i, : e.n_samples] = decode_audio(e.flac, e.n_samples)
    return {
        "input_ids": input_ids, "position_ids": position_ids, "labels": labels,
        "wav": wav, "wav_lengths": lengths,
        "n_tokens": sum(len(e.ids) for e in examples),
        "keys": [e.key for e in examples], "tasks": [e.task for e in examples],
        "epochs": [e.epoch for e in examples],
    }


def pack(examples, rows_per_batch: int, max_seq_len: int, counters: Counter, flush: bool):
    """Examples -> batch plans (lists of rows of Examples), packing in order."""
    rows: list[list[Example]] = []
    row: list[Example] = []
    used = 0
    for e in examples:
        if len(e.ids) > max_seq_len:
            counters["too_long"] += 1
            continue
        if used + len(e.ids) > max_seq_len:
            rows.append(row)
            row, used = [], 0
            if len(rows) == rows_per_batch:
                yield rows
                rows = []
        row.append(e)
        used += len(e.ids)
    if flush and row:
        rows.append(row)
    if flush and rows:
        yield rows


def seeded_shuffle(items, size: int, rng: random.Random):
    """A shuffle buffer of `size` items driven by `rng` (size <= 1: no shuffle)."""
    if size <= 1:
        yield from items
        return
    buf = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf.pop(rng.randrange(len(buf)))
    rng.shuffle(buf)
    yield from buf


class ShardStream(IterableDataset):
    """Batches for one rank. Infinite (epoch after epoch) for training; one pass, unshuffled, for eval.
    `skip` batches are replayed without decoding audio (resume)."""

    def __init__(self, shards: list[str], tok, *, task_weights: dict[str, float],
                 marker_interval_s: float | None, tokens_per_batch: int, max_seq_len: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0, shuffle_buffer: int = 0,
                 infinite: bool = True, skip: int = 0, captions: dict[str, str] | None = None):
        super().__init__()
        self.shards, self.tok = list(shards), tok
        self.task_weights, self.marker_interval_s = dict(task_weights), marker_interval_s
        self.rows_per_batch = max(1, tokens_per_batch // max_seq_len)
        self.max_seq_len = max_seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.infinite, self.skip = shuffle_buffer, infinite, skip
        self.counters: Counter = Counter()
        self.captions = captions

    def examples(self, part: int, parts: int):
        """Examples of reader `part` of `parts`, epoch after epoch."""
        for epoch in itertools.count() if self.infinite else [0]:
            shards = list(self.shards)
            if self.infinite:
                random.Random(f"{self.seed}:{epoch}").shuffle(shards)
            by_shard = len(shards) >= parts
            mine = shards[part::parts] if by_shard else shards
            samples = wds.tarfile_samples([{"url": u} for u in mine])
            if not by_shard:
                samples = (s for i, s in enumerate(samples) if i % parts == part)
            n = 0
            for s in seeded_shuffle(samples, self.shuffle_buffer, random.Random(f"{self.seed}:{epoch}:{part}")):
                rng = random.Random(f"{self.seed}:{epoch}:{s['__key__']}")
                e = make_example(s, self.tok, self.task_weights, self.marker_interval_s, rng, self.counters,
                                 self.captions)
                if e is not None:
                    e.epoch = epoch
                    n += 1
                    yield e
            if n == 0 and self.infinite:
                raise RuntimeError(f"reader {part}/{parts} got no usable sample from {mine} ({dict(self.counters)})")

    def plans(self, part: int, parts: int):
        return pack(self.examples(part, parts), self.rows_per_batch, self.max_seq_len, self.counters,
                    flush=not self.infinite)

    def __iter__(self):
        info = get_worker_info()
        W, w = (info.num_workers, info.id) if info else (1, 0)
        # The DataLoader takes batches from its workers in turn, so after `skip` batches the next one is
        # virtual worker (skip % W)'s: worker w plays virtual worker (w + skip) % W and drops what that
        # one had already produced.
        v = (w + self.skip) % W
        done = len(range(v, self.skip, W))
        pad_id = self.tok.special[PAD]
        for i, plan in enumerate(self.plans(self.rank * W + v, self.world_size * W)):
            if i >= done:
                yield collate(plan, pad_id)


def make_loader(stream: ShardStream, num_workers: int = 0):
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers,
                                       persistent_workers=False)
