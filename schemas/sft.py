"""The SFT job's outputs: one JSON object per sample in the shards, and the Parquet index.

Every sample describes itself: task, prompt, answer, the rendered conversation, and `source_fields`, the
annotation fields (with their values) the answer was derived from, e.g. `speech.words` with times for
`asr_ts`, `sound.events` for `event_localisation`, `music.tempo_bpm` for `music_qa`, `speech.n_speakers`
for `speaker_ts`. An evaluator scores a model's answer against those fields, not against the text.
"""

from __future__ import annotations

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
