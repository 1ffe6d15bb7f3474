"""Segments -> SFT samples: how many per task (the weight), which answer, which phrasing, which variant.

Every random choice comes from `random.Random(f"{seed}:{key}:{task}")`, so a segment's samples depend only
on its annotation, the config and the seed: not on the order segments are read, nor on the other inputs.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from jobs.sft.prompts import prompt_bank
from jobs.sft.tasks import Draft, Segment, Task
from schemas.sft import dump_source_fields, render_assistant
from schemas.sft_config import SftConfig
from schemas.version import SCHEMA_VERSION


@dataclass
class Sample:
    sample_id: str
    task: str
    variant: str
    prompt: str
    prompt_id: str
    answer: str
    thinking: str | None
    source_fields: dict[str, Any]
    seed: int
    seg: Segment

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt},
                {"role": "assistant", "content": render_assistant(self.answer, self.thinking)}]

    def record(self, shard: str, audio_path: str | None) -> dict[str, Any]:
        """The sample's `<sample_id>.json` in the SFT shard (schemas.sft.RECORD_SCHEMA): what the trainer reads."""
        a = self.seg.ann
        return {
            "sample_id": self.sample_id, "task": self.task, "variant": self.variant,
            "prompt": self.prompt, "prompt_id": self.prompt_id, "answer": self.answer, "thinking": self.thinking,
            "messages": self.messages(), "source_fields": dump_source_fields(self.source_fields),
            "key": a.key, "audio_ref": self.seg.audio_ref, "audio_shard": self.seg.shard, "audio_key": a.key,
            "audio_path": audio_path, "annotate_output": self.seg.output, "shard": shard,
            "source_uri": a.source_uri, "start_s": a.start_s, "end_s": a.end_s, "duration_s": a.duration_s,
            "language": a.speech.language if a.speech else None, "config_hash": a.config_hash,
            "caption_source": self.seg.caption_source, "seed": self.seed, "schema_version": SCHEMA_VERSION,
        }

    def index_row(self, shard: str, audio_path: str | None) -> dict[str, Any]:
        a = self.seg.ann
        return {
            "sample_id": self.sample_id, "task": self.task, "variant": self.variant, "key": a.key,
            "audio_ref": self.seg.audio_ref, "prompt": self.prompt, "answer": self.answer, "thinking": self.thinking,
            "prompt_id": self.prompt_id, "source_fields": dump_source_fields(self.source_fields),
            "seed": self.seed, "shard": shard, "audio_path": audio_path, "source_uri": a.source_uri,
            "start_s": a.start_s, "end_s": a.end_s, "duration_s": a.duration_s,
            "language": a.speech.language if a.speech else None, "config_hash": a.config_hash,
            "schema_version": SCHEMA_VERSION,
        }


class Stats:
    """What a run made and skipped; merged over shards into report.json (all counts, so resume-safe)."""

    def __init__(self):
        self.samples: Counter = Counter()
        self.eligible: Counter = Counter()
        self.not_applicable: Counter = Counter()
        self.skipped: dict[str, Counter] = defaultdict(Counter)
        self.prompts: dict[str, Counter] = defaultdict(Counter)
        self.variants: dict[str, Counter] = defaultdict(Counter)
        self.segments = 0
        self.segments_with_samples = 0
        self.segment_errors: Counter = Counter()

    def to_json(self) -> dict[str, Any]:
        return {
            "segments": self.segments, "segments_with_samples": self.segments_with_samples,
            "segment_errors": dict(sorted(self.segment_errors.items())),
            "samples": dict(sorted(self.samples.items())), "eligible": dict(sorted(self.eligible.items())),
            "not_applicable": dict(sorted(self.not_applicable.items())),
            "skipped": {t: dict(sorted(c.items())) for t, c in sorted(self.skipped.items())},
            "variants": {t: dict(sorted(c.items())) for t, c in sorted(self.variants.items())},
            "prompts": {t: dict(sorted(c.items())) for t, c in sorted(self.prompts.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stats:
        s = cls()
        s.segments, s.segments_with_samples = d["segments"], d["segments_with_samples"]
        s.segment_errors.update(d["segment_errors"])
        for name in ("samples", "eligible", "not_applicable"):
            getattr(s, name).update(d[name])
        for name in ("skipped", "variants", "prompts"):
            for t, c in d[name].items():
                getattr(s, name)[t].update(c)
        return s

    def merge(self, other: Stats) -> None:
        self.segments += other.segments
        self.segments_with_samples += other.segments_with_samples
        self.segment_errors.update(other.segment_errors)
        for name in ("samples", "eligible", "not_applicable"):
            getattr(self, name).update(getattr(other, name))
        for name in ("skipped", "variants", "prompts"):
            for t, c in getattr(other, name).items():
                getattr(self, name)[t].update(c)


def draw_count(weight: float, rng: random.Random) -> int:
    """`weight` samples on average: its whole part always, one more with probability its fraction."""
    whole = int(weight)
    return whole + (1 if rng.random() < weight - whole else 0)


class SampleGenerator:
    def __init__(self, cfg: SftConfig, tasks: dict[str, Task]):
        self.cfg = cfg
        self.tasks = tasks
        self.weights = cfg.weights()

    def samples(self, seg: Segment, stats: Stats) -> list[Sample]:
        out: list[Sample] = []
        stats.segments += 1
        for name, task in self.tasks.items():
            drafts = task.drafts(seg, self.cfg.thresholds)
            stats.skipped[name].update(drafts.skipped)
            if not drafts.items:
                if not drafts.skipped:
                    stats.not_applicable[name] += 1
                continue
            stats.eligible[name] += 1
            rng = random.Random(f"{self.cfg.seed}:{seg.key}:{name}")
            n = draw_count(self.weights[name], rng)
            order: list[Draft] = []
            for i in range(n):
                if i % len(drafts.items) == 0:  # each answer once before any repeats
                    order = rng.sample(drafts.items, len(drafts.items))
                out.append(self._sample(seg, name, i, order[i % len(order)], rng, stats))
        if out:
            stats.segments_with_samples += 1
        return out

    def _sample(self, seg: Segment, task: str, i: int, d: Draft, rng: random.Random, stats: Stats) -> Sample:
        bank = prompt_bank(task, d.kind)
        idx = rng.randrange(len(bank))
        prompt = bank[idx].format(**d.prompt_vars)
        answer, thinking, variant = d.answer, None, d.kind
        if d.thinking is not None:  # a worked answer: in <think> (Thinking) or written out before the answer
            if rng.random() < self.cfg.thinking_share:
                thinking, variant = d.thinking, f"{d.kind}+thinking"
            else:
                answer = f"{d.thinking}\n{d.answer}"
        prompt_id = f"{task}.{d.kind}.{idx:03d}"
        stats.samples[task] += 1
        stats.prompts[task][prompt_id] += 1
        stats.variants[task][variant] += 1
        return Sample(f"{seg.key}-{task}-{i}", task, variant, prompt, prompt_id, answer, thinking,
                      d.source_fields, self.cfg.seed, seg)
