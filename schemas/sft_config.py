"""The `eventcap sft` configuration (sft.yaml): task weights, confidence thresholds, output layout.

A task's `weight` is the expected number of samples it makes from each segment that supports it: 1.0 = one
sample per eligible segment, 0.5 = every other one (drawn), 2.5 = two, and a third half the time; 0 turns the
task off. Unknown keys are errors that name the key (as in the job config). `s3:` is the job config's section
(endpoint, region, credentials for s3:// annotate outputs): where the bytes live is not part of the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.config import ConfigError, S3Config, read_config_tree, validation_error

TASK_NAMES = ("caption", "speech_caption", "asr", "asr_ts", "speaker_ts", "music_qa", "event_localisation",
              "audio_qa", "reasoning")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Section):
    """Fields under these are not used: the sample (or the question about them) is skipped, with a reason."""

    tempo_confidence: float = Field(0.3, ge=0, le=1, description="music tempo/meter questions need this much")
    key_confidence: float = Field(0.5, ge=0, le=1, description="music key questions need this much")
    no_speech_prob: float = Field(0.6, ge=0, le=1, description="ASR tasks skip segments above this")
    language_probability: float = Field(0.5, ge=0, le=1, description="a language is stated only above this")
    event_score: float = Field(0.4, ge=0, le=1, description="sound events under this score are not used")
    tag_score: float = Field(0.05, ge=0, le=1, description="music tags (genre, instruments) under this are not used "
                                                          "(the annotator's own instrument threshold is 0.05)")
    min_words: int = Field(1, ge=1, description="ASR tasks need at least this many words")


class TaskConfig(_Section):
    weight: float = Field(1.0, ge=0, le=16)


def _default_tasks() -> dict[str, TaskConfig]:
    return {name: TaskConfig() for name in TASK_NAMES}


class SftConfig(_Section):
    seed: int = 0
    format: Literal["webdataset", "moss-jsonl"] = "webdataset"
    embed_audio: bool = Field(False, description="copy each segment's FLAC into the SFT shard")
    tasks: dict[str, TaskConfig] = Field(default_factory=_default_tasks)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    segments_per_shard: int = Field(500, ge=1, description="segments read per output shard (the unit of resume)")
    thinking_share: float = Field(0.5, ge=0, le=1, description="reasoning samples in the Thinking variant")
    caption_table: str | None = Field(None, description="a named caption table from `recaption` "
                                                        "(ANNOTATE_OUT/captions/NAME/*.parquet) in place of the unified caption")
    audio_qa_source: Literal["template"] = Field(
        "template", description="where open questions come from; an LLM source registers in jobs/sft/tasks.py")
    s3: S3Config = Field(default_factory=S3Config, description="for s3:// annotate outputs; not part of the plan")

    def weights(self) -> dict[str, float]:
        return {name: (self.tasks[name].weight if name in self.tasks else 0.0) for name in TASK_NAMES}


def load_sft_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SftConfig:
    tree = read_config_tree(path, overrides)
    unknown = [t for t in (tree.get("tasks") or {}) if t not in TASK_NAMES]
    if unknown:
        raise ConfigError(f"invalid sft config:\n  tasks.{unknown[0]}: unknown task (one of {', '.join(TASK_NAMES)})")
    if isinstance(tree.get("tasks"), dict):  # tasks not named keep their default weight
        tree["tasks"] = {**{n: {} for n in TASK_NAMES}, **{k: v or {} for k, v in tree["tasks"].items()}}
    try:
        return SftConfig.model_validate(tree)
    except ValidationError as e:
        raise validation_error(e, "sft config") from None
