"""Data contracts: job config, JSON payloads, Arrow tables. One SCHEMA_VERSION for all of them."""

from schemas.annotation import (
    AttributePrediction,
    GeneralAudioAnnotation,
    ModelInfo,
    MusicAnnotation,
    QuarantineRecord,
    SegmentAnnotation,
    SoundEvent,
    SpeakerTurn,
    SpeechAnnotation,
    Tag,
    Word,
)
from schemas.config import ConfigError, JobConfig, load_config
from schemas.version import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION", "AttributePrediction", "ConfigError", "JobConfig", "ModelInfo", "MusicAnnotation",
    "QuarantineRecord", "SegmentAnnotation", "GeneralAudioAnnotation", "SoundEvent", "SpeakerTurn",
    "SpeechAnnotation", "Tag", "Word", "load_config",
]
