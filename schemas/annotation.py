"""Pydantic models of every JSON payload: the shard's `<key>.json` is one `SegmentAnnotation`.

Times inside a segment are seconds relative to the segment start; `SegmentAnnotation.start_s` is the
segment's offset in its source, so `source_time = start_s + t`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.version import SCHEMA_VERSION

CutReason = Literal["pause", "class_change", "novelty", "forced_max_length", "source_start", "source_end"]
Branch = Literal["speech", "music", "general"]
CaptionSource = Literal["template", "llm", "template_fallback"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tag(_Model):
    label: str
    score: float


class ModelInfo(_Model):
    """A model used to produce a field: its name (or path) and version."""

    name: str
    version: str = ""


# ---------------------------------------------------------------- speech branch
class Word(_Model):
    word: str
    start_s: float
    end_s: float
    probability: float
    speaker: str | None = None


class SpeakerTurn(_Model):
    speaker: str
    start_s: float
    end_s: float


class AttributePrediction(_Model):
    """A classifier output (gender, age, emotion). `value` is null with `model='none'` when no model serves."""

    value: str | None = None
    score: float | None = None
    model: str = "none"


class SpeechAnnotation(_Model):
    transcript: str = ""
    language: str | None = None
    language_probability: float | None = None
    language_source: Literal["detected", "config"] | None = None
    words: list[Word] = Field(default_factory=list)
    no_speech_prob: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    asr_model: str | None = None
    hallucination_dropped: list[str] = Field(default_factory=list)
    speakers: list[SpeakerTurn] = Field(default_factory=list)
    n_speakers: int = 0
    diarization_model: str | None = None
    f0_median_hz: float | None = None
    f0_min_hz: float | None = None
    f0_max_hz: float | None = None
    voice_register: Literal["low", "mid", "high"] | None = None
    words_per_s: float | None = None
    syllables_per_s: float | None = None
    loudness_lufs: float | None = None
    snr_db: float | None = None
    dnsmos_ovrl: float | None = None
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    gender: AttributePrediction = Field(default_factory=AttributePrediction)
    age: AttributePrediction = Field(default_factory=AttributePrediction)
    emotion: AttributePrediction = Field(default_factory=AttributePrediction)
    caption: str = ""


# ---------------------------------------------------------------- music branch
class MusicAnnotation(_Model):
    tempo_bpm: float | None = None
    tempo_confidence: float | None = None
    beats_s: list[float] = Field(default_factory=list)
    time_signature: str | None = None
    music_key: str | None = None  # e.g. "A minor"
    key_confidence: float | None = None
    tonality_confidence: float | None = None  # share of pitched (peaked) spectrum; no key under music.min_tonality
    loudness_lufs: float | None = None
    dynamic_range_db: float | None = None
    onset_density: float | None = None  # onsets per second
    spectral_centroid_hz: float | None = None
    tags: list[Tag] = Field(default_factory=list)
    genres: list[str] = Field(default_factory=list)
    instruments: list[str] = Field(default_factory=list)
    vocals: bool = False
    lyrics: str | None = None
    melody_range_midi: list[int] | None = None  # [lowest, highest] note when transcribed
    caption: str = ""


# ---------------------------------------------------------------- general-audio branch
class SoundEvent(_Model):
    label: str
    start_s: float
    end_s: float
    score: float


class GeneralAudioAnnotation(_Model):
    events: list[SoundEvent] = Field(default_factory=list)
    scene_tags: list[str] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)  # the segment's top sound classes, clip-level (mean) pooling
    loudness_lufs: float | None = None
    snr_db: float | None = None
    caption: str = ""


# ---------------------------------------------------------------- the segment
class SegmentAnnotation(_Model):
    """Everything known about one segment; written as `<key>.json` in the shard."""

    key: str
    source_uri: str
    source_sha256: str
    sample_rate: int
    start_sample: int  # in the 16 kHz decoded source
    end_sample: int
    start_s: float
    end_s: float
    duration_s: float
    cut_reasons: list[CutReason]  # [reason of the start cut, reason of the end cut]
    routes: list[Branch]
    speech_share: float
    music_share: float
    general_share: float
    top_classes: list[Tag] = Field(default_factory=list)  # YAMNet classes averaged over the segment
    speech: SpeechAnnotation | None = None
    music: MusicAnnotation | None = None
    general: GeneralAudioAnnotation | None = None
    speech_caption: str | None = None
    music_caption: str | None = None
    general_caption: str | None = None
    caption: str = ""  # the unified caption (also `<key>.txt`)
    short_caption: str = ""  # at most 15 words
    caption_source: CaptionSource | None = None
    caption_model: str | None = None
    caption_prompt_id: str | None = None  # which prompt (or template version) produced it
    caption_rejections: list[str] = Field(default_factory=list)  # "reason: detail" of every rejected LLM reply
    models: dict[str, ModelInfo] = Field(default_factory=dict)
    config_hash: str
    schema_version: str = SCHEMA_VERSION


class QuarantineRecord(_Model):
    """A source (or segment) that could not be processed, and why. Nothing is dropped without one."""

    source_uri: str
    stage: str
    error: str  # error class, e.g. "DecodeError", "EmptyFile", "AllSilence"
    message: str
    source_sha256: str | None = None
    key: str | None = None
    time: str  # ISO 8601 UTC
