"""Task evaluation: generate for held-out SFT samples and score each task with the metric its fields call for.

    eventcap evaluate --checkpoint RUN --data SFT_OUT/shards [--tasks asr,asr_ts] [--limit 50] [--output DIR]

Writes DIR/evaluate.json (default DIR: the run directory) and DIR/evaluate.md (the table), and prints it.

What is read from an SFT sample (<key>.json in a WebDataset tar; every field optional but the audio):
    task                 which metric: caption, asr, asr_ts, event_localisation, music_qa, speaker_ts
                         (other tasks are scored like caption: exact match and WER against the answer)
    prompt / answer      else the first user / last assistant turn of "messages"
    audio                <key>.flac in the same tar; else "audio_ref" ("SHARD.tar/KEY", "SHARD.tar#KEY",
                         {"shard", "key"}, or a file path), resolved against --audio-root dirs and the
                         shard's own directory and its parent's "shards" sibling
    reference fields     looked up at the top level, then under "reference", "fields", "source_fields" (a
                         JSON string, as `eventcap sft` writes it, or a dict), where a dotted name
                         ("speech.words", "music.music_key") also answers to its last part ("words", "key"):
                         asr         "transcript" (else the answer)
                         asr_ts      "words" [{word, start_s, end_s}] (else the answer's "[s-e] word" spans)
                         event_localisation  "events" [{label, start_s, end_s}] (else the answer's lines)
                         music_qa    "tempo_bpm" (or "tempo"), "key", "tags" (or "genres"/"instruments")
                         speaker_ts  "n_speakers" (or "speaker_count"/"num_speakers")
Scores per task (see trainer/metrics.py): caption exact / WER; asr WER, CER; asr_ts WER + AAS (ms, FunASR,
not halved); event_localisation P/R/F1 with a 200 ms collar and onset/offset errors; music_qa tempo within
4 %, exact key, tag-set F1; speaker_ts exact speaker count.
"""

from __future__ import annotations

import json
import math
import os
import re
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from schemas.sft import source_fields_of
from trainer import metrics
from trainer.data import audio_length, decode_audio, expand_data

TASKS = ("caption", "asr", "asr_ts", "event_localisation", "music_qa", "speaker_ts")
_NESTED = ("reference", "fields", "source_fields")


@dataclass
class EvalSample:
    key: str
    task: str
    prompt: str
    answer: str
    wav: torch.Tensor  # (S,) at 16 kHz
    meta: dict = field(default_factory=dict)

    def field(self, *names: str):
        """The first of `names` found at the top level of the sample JSON or under its nested fields."""
        for i, where in enumerate([self.meta] + [self.meta.get(n) for n in _NESTED]):
            if isinstance(where, str) and i > 0:
                where = source_fields_of(where)
            if isinstance(where, dict):
                for n in names:
                    for k in (n, *(k for k in where if i > 0 and _last_part(k) == n)):
                        if where.get(k) not in (None, "", []):
                            return where[k]
        return None


def _last_part(name: str) -> str:
    """"speech.words" -> "words"; "music.music_key" -> "key" (the field as the metrics name it)."""
    last = name.rsplit(".", 1)[-1]
    return last.removeprefix("music_") if "." in name else last


# ----------------------------------------------------------------------------- reading SFT shards
def _turns(meta: dict) -> tuple[str, str]:
    msgs = meta.get("messages") or meta.get("conversation") or []
    user = next((m.get("content", "") for m in msgs if m.get("role") == "user"), "")
    assistant = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "assistant"), "")
    return (meta.get("prompt") or user).replace("<audio>", "").strip(), meta.get("answer") or assistant


class AudioResolver:
    """Finds the audio of a sample that points at it (`audio_ref`) instead of carrying its own .flac."""

    def __init__(self, roots: list[str]):
        self.roots = [Path(r) for r in roots]
        self._tars: dict[Path, dict[str, bytes]] = {}

    def _dirs(self, shard: Path) -> list[Path]:
        return self.roots + [shard.parent, shard.parent.parent / "shards", shard.parent.parent.parent / "shards"]

    def _member(self, tar_path: Path, key: str) -> bytes | None:
        if tar_path not in self._tars:
            members = {}
            with tarfile.open(tar_path) as tar:
                for m in tar.getmembers():
                    if m.isfile() and m.name.endswith(".flac"):
                        members[m.name[: -len(".flac")]] = tar.extractfile(m).read()
            self._tars[tar_path] = members
        return self._tars[tar_path].get(key)

    def resolve(self, ref, shard: Path) -> bytes | None:
        if isinstance(ref, dict):
            tar_name, key = ref.get("shard") or ref.get("audio_shard"), ref.get("key") or ref.get("audio_key")
        elif isinstance(ref, str):
            if os.path.isfile(ref):
                return Path(ref).read_bytes()
            m = re.match(r"^(.*\.tar)[#/:](.+)$", ref)
            if not m:
                return None
            tar_name, key = m.group(1), m.group(2)
        else:
            return None
        if not tar_name or not key:
            return None
        key = key[: -len(".flac")] if key.endswith(".flac") else key
        for d in [Path("")] + self._dirs(shard):
            cand = d / tar_name if not os.path.isabs(tar_name) else Path(tar_name)
            if cand.is_file():
                found = self._member(cand, key)
                if found is not None:
                    return found
        return None


def read_sft_samples(data: list[str], tasks: list[str] | None = None, limit: int | None = None,
                     audio_roots: list[str] = ()) -> tuple[list[EvalSample], Counter]:
    """Samples of the wanted tasks (at most `limit` per task, in shard order) and counts of what was skipped."""
    import webdataset as wds

    shards = expand_data(data)
    resolver = AudioResolver(list(audio_roots))
    out: list[EvalSample] = []
    per_task: Counter = Counter()
    skipped: Counter = Counter()
    for shard in shards:
        for s in wds.tarfile_samples([{"url": shard}]):
            if "json" not in s:
                skipped["no_json"] += 1
                continue
            try:
                meta = json.loads(s["json"])
            except ValueError:
                skipped["bad_json"] += 1
                continue
            task = meta.get("task") or "caption"
            if tasks and task not in tasks:
                continue
            if limit is not None and per_task[task] >= limit:
                continue
            prompt, answer = _turns(meta)
            flac = s.get("flac") or resolver.resolve(meta.get("audio_ref") or (
                {"shard": meta["audio_shard"], "key": meta.get("audio_key")} if meta.get("audio_shard") else None),
                Path(shard))
            if flac is None:
                skipped["no_audio"] += 1
                continue
            try:
                n, _ = audio_length(flac)
                wav = decode_audio(flac, n)
            except Exception:  # unreadable audio is counted, never fatal
                skipped["bad_audio"] += 1
                continue
            per_task[task] += 1
            out.append(EvalSample(s["__key__"], task, prompt, answer, wav, meta))
    return out, skipped


# ----------------------------------------------------------------------------- parsing answers
_SPAN_RE = re.compile(r"\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\s*([^\[\n]*)")
_LINE_RE = re.compile(r"^\s*\[?(\d+(?:\.\d+)?)s?\s*-\s*(\d+(?:\.\d+)?)s?\]?\s*:\s*(.+?)\s*$", re.MULTILINE)
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


def parse_spans(text: str) -> list[dict]:
    """"[0.5-0.9] hello [1-1.4] big world" -> [{word: "hello", ...}, {word: "big world", ...}]."""
    return [{"word": m.group(3).strip(), "start_s": float(m.group(1)), "end_s": float(m.group(2))}
            for m in _SPAN_RE.finditer(text) if m.group(3).strip()]


def parse_events(text: str) -> list[dict]:
    """Events as "start - end: label" lines (MOSS-Audio's form) or "[start-end] label" spans."""
    events = [{"label": m.group(3), "start_s": float(m.group(1)), "end_s": float(m.group(2))}
              for m in _LINE_RE.finditer(text)]
    if not events:
        events = [{"label": w["word"], "start_s": w["start_s"], "end_s": w["end_s"]} for w in parse_spans(text)]
    return events


def parse_tempo(text: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:bpm|beats per minute)", text, re.IGNORECASE) or \
        re.search(r"(\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def parse_count(text: str) -> int | None:
    m = re.search(r"\b(\d+)\b", text)
    if m:
        return int(m.group(1))
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in _NUMBER_WORDS:
            return _NUMBER_WORDS[w]
    if re.search(r"\b(single|one|a|only one) speaker\b", text.lower()):
        return 1
    return None


def parse_tags(text: str) -> list[str]:
    text = re.sub(r"^[^:]*:\s*", "", text.strip()) if ":" in text else text
    return [t.strip(" .") for t in re.split(r",|;|\n|\band\b", text) if t.strip(" .")]


def _words_of(items) -> list[dict]:
    return [{"word": w.get("word") or w.get("text", ""), "start_s": float(w["start_s"]), "end_s": float(w["end_s"])}
            for w in items]


def _events_of(items) -> list[dict]:
    return [{"label": e.get("label") or e.get("description") or e.get("text", ""),
             "start_s": float(e.get("start_s", e.get("onset_s", 0.0))),
             "end_s": float(e.get("end_s", e.get("offset_s", 0.0)))} for e in items]


# ----------------------------------------------------------------------------- scoring
def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def score_task(task: str, samples: list[EvalSample], hyps: list[str]) -> dict:
    """The task's scores over its samples and their generated answers."""
    refs = [s.answer for s in samples]
    res: dict = {"n": len(samples)}
    if task == "asr":
        ref_text = [str(s.field("transcript") or s.answer) for s in samples]
        res.update(wer=metrics.wer(ref_text, hyps), cer=metrics.cer(ref_text, hyps))
    elif task == "asr_ts":
        ref_words = [_words_of(s.field("words")) if s.field("words") else parse_spans(s.answer) for s in samples]
        hyp_words = [parse_spans(h) for h in hyps]
        aas, matched = metrics.average_shift(ref_words, hyp_words)
        res.update(wer=metrics.wer([" ".join(w["word"] for w in r) for r in ref_words],
                                   [" ".join(w["word"] for w in h) for h in hyp_words]),
                   aas_ms=aas, aas_matched_words=matched, aas_convention="FunASR: mean |dstart|+|dend|, not halved")
    elif task == "event_localisation":
        ref_ev = [_events_of(s.field("events")) if s.field("events") else parse_events(s.answer) for s in samples]
        res.update(metrics.event_scores(ref_ev, [parse_events(h) for h in hyps]))
    elif task == "music_qa":
        tempo, key, tags = [], [], []
        for s, h in zip(samples, hyps, strict=True):
            if s.field("tempo_bpm", "tempo") is not None:
                tempo.append(metrics.tempo_correct(float(s.field("tempo_bpm", "tempo")), parse_tempo(h)))
            if s.field("key") is not None:
                key.append(metrics.key_correct(str(s.field("key")), h))
            ref_tags = s.field("tags", "genres", "instruments")
            if ref_tags:
                ref_tags = ref_tags if isinstance(ref_tags, list) else parse_tags(str(ref_tags))
                tags.append(metrics.set_f1([str(t) for t in ref_tags], parse_tags(h)))
        res.update(tempo_acc=sum(tempo) / len(tempo) if tempo else None, n_tempo=len(tempo),
                   key_acc=sum(key) / len(key) if key else None, n_key=len(key),
                   tag_f1=sum(tags) / len(tags) if tags else None, n_tags=len(tags))
    elif task == "speaker_ts":
        ok = []
        for s, h in zip(samples, hyps, strict=True):
            ref_n = s.field("n_speakers", "speaker_count", "num_speakers")
            if ref_n is None:
                ref_n = len({w["word"].split(":")[0] for w in parse_spans(s.answer)}) or parse_count(s.answer)
            ok.append(ref_n is not None and parse_count(h) == int(ref_n))
        res.update(speaker_count_acc=sum(ok) / len(ok) if ok else None)
    else:  # caption and any other free-text task
        res.update(exact=sum(metrics.normalize_text(r) == metrics.normalize_text(h) for r, h in zip(refs, hyps, strict=True))
                   / max(1, len(refs)), wer=metrics.wer(refs, hyps))
    return {k: _finite(v) for k, v in res.items()}


def generate_answers(generator, samples: list[EvalSample], max_new_tokens: int, batch_size: int) -> list[str]:
    order = sorted(range(len(samples)), key=lambda i: samples[i].wav.numel())  # similar lengths batch well
    out: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        gens = generator.generate([samples[i].wav for i in idx], [samples[i].prompt for i in idx],
                                  max_new_tokens=max_new_tokens)
        for i, g in zip(idx, gens, strict=True):
            out[i] = g.answer
    return [out[i] for i in range(len(samples))]


def evaluate_samples(generator, samples: list[EvalSample], max_new_tokens: int = 256,
                     batch_size: int = 8) -> tuple[dict, list[dict]]:
    """({task: scores}, per-sample records) for already-read samples."""
    hyps = generate_answers(generator, samples, max_new_tokens, batch_size)
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_task[s.task].append(i)
    scores = {t: score_task(t, [samples[i] for i in idx], [hyps[i] for i in idx])
              for t, idx in sorted(by_task.items())}
    records = [{"key": s.key, "task": s.task, "prompt": s.prompt, "reference": s.answer, "hypothesis": h}
               for s, h in zip(samples, hyps, strict=True)]
    return scores, records


def format_table(scores: dict) -> str:
    """A Markdown table: one row per task, the columns its scores have."""
    lines = ["| task | n | scores |", "|---|---|---|"]
    for task, sc in scores.items():
        cells = []
        for k, v in sc.items():
            if k in ("n", "aas_convention") or v is None:
                continue
            cells.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
        lines.append(f"| {task} | {sc['n']} | {', '.join(cells)} |")
    return "\n".join(lines)


def run_evaluate(checkpoint: str, data: list[str], tasks: list[str] | None = None, output: str | None = None,
                 limit: int | None = None, max_new_tokens: int = 256, batch_size: int = 8,
                 audio_roots: list[str] = (), device: str | None = None) -> dict:
    from trainer.generate import Generator

    samples, skipped = read_sft_samples(data, tasks, limit, audio_roots)
    if not samples:
        raise ValueError(f"no usable samples for tasks {tasks or 'any'} in {data} (skipped: {dict(skipped)})")
    gen = Generator.from_checkpoint(checkpoint, device=device)
    scores, records = evaluate_samples(gen, samples, max_new_tokens, batch_size)
    report = {"checkpoint": str(checkpoint), "data": list(data), "tasks": scores, "skipped": dict(skipped),
              "aas_convention": "FunASR AverageShiftCalculator: mean over matched words of |dstart|+|dend| in ms "
                                "(not halved)",
              "samples": records}
    out_dir = Path(output) if output else (Path(checkpoint) if Path(checkpoint).is_dir() else Path("."))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluate.json").write_text(json.dumps(report, indent=1))
    (out_dir / "evaluate.md").write_text(format_table(scores) + "\n")
    return report
