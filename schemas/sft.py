"""The SFT job's outputs: one JSON object per sample in the shards, and the Parquet index.

Every sample describes itself: task, prompt, answer, the rendered conversation, and `source_fields`, the
annotation fields (with their values) the answer was derived from, e.g. `speech.words` with times for
`asr_ts`, `sound.events` for `event_localisation`, `music.tempo_bpm` for `music_qa`, `speech.n_speakers`
for `speaker_ts`. An evaluator scores a model's answer against those fields, not against the text.

`source_fields` is a JSON string in both files (one name, one type): its keys vary per task, so no reader
(`datasets`, DuckDB) could give it one column type as an object. `source_fields_of` reads it back.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

INDEX_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("task", pa.string()),
    ("variant", pa.string()),  # the question kind / phrasing family (e.g. "words", "tempo"), "+thinking" when so
    ("key", pa.string()),  # the annotate segment key
    ("audio_ref", pa.string()),  # "<annotate output>/shards/<shard>.tar#<key>"
    ("prompt", pa.string()),
    ("answer", pa.string()),
    ("thinking", pa.string()),  # nullable: the worked steps of a Thinking sample
    ("prompt_id", pa.string()),  # "<task>.<kind>.<index>" into jobs/sft/prompts.py
    ("source_fields", pa.string()),  # JSON {field: value}
    ("seed", pa.int64()),
    # lineage
    ("shard", pa.string()),  # the SFT shard holding the sample
    ("audio_path", pa.string()),  # moss-jsonl: the 16 kHz WAV; else null
    ("source_uri", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("language", pa.string()),
    ("config_hash", pa.string()),  # of the annotate job
    ("schema_version", pa.string()),
])


MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

# `<sample_id>.json` in an SFT shard (jobs/sft/generate.py `Sample.record`); the dataset card's types come from here
RECORD_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("task", pa.string()),
    ("variant", pa.string()),
    ("prompt", pa.string()),
    ("prompt_id", pa.string()),
    ("answer", pa.string()),
    ("thinking", pa.string()),  # nullable
    ("messages", pa.list_(MESSAGE)),  # [user prompt, assistant answer (with <think> when thinking)]
    ("source_fields", pa.string()),  # JSON {field: value}, the same string as the index's
    ("key", pa.string()),
    ("audio_ref", pa.string()),
    ("audio_shard", pa.string()),
    ("audio_key", pa.string()),
    ("audio_path", pa.string()),
    ("annotate_output", pa.string()),
    ("shard", pa.string()),
    ("source_uri", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("language", pa.string()),
    ("config_hash", pa.string()),
    ("caption_source", pa.string()),
    ("seed", pa.int64()),
    ("schema_version", pa.string()),
])

# one line of SFT_OUT/train.jsonl (format moss-jsonl)
MOSS_LINE_SCHEMA = pa.schema([
    ("conversation", pa.list_(pa.struct([("role", pa.string()), ("message_type", pa.string()),
                                         ("content", pa.string())]))),
])


def dump_source_fields(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


def source_fields_of(value: str | dict | None) -> dict[str, Any]:
    """`source_fields` as a dict, from the JSON string (or the dict older SFT shards hold)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        parsed = json.loads(value)
        return parsed if isinstance(parsed, dict) else {}
    return {}


def render_assistant(answer: str, thinking: str | None) -> str:
    """The assistant turn: the answer, or `<think>\\nsteps\\n</think>\\n\\nanswer` for a Thinking sample."""
    if thinking is None:
        return answer
    return f"{THINK_OPEN}\n{thinking}\n{THINK_CLOSE}\n\n{answer}"


def split_thinking(text: str) -> tuple[str | None, str]:
    """The inverse of `render_assistant`: (thinking or None, answer)."""
    if text.startswith(THINK_OPEN) and THINK_CLOSE in text:
        head, _, tail = text.partition(THINK_CLOSE)
        return head[len(THINK_OPEN):].strip(), tail.strip()
    return None, text
