"""Configuration of the speech branch (owned by annotators/speech).

Defaults run the small embedded models on a 2-core CPU; every model is configurable by name or local path so
that a GPU cluster runs e.g. `asr.model: /models/faster-whisper-large-v3`, `asr.compute_type: float16`,
`diarization.backend: pyannote` with its own pipeline.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.resources import ActorResources

# Model names served from packages installed with the project (no download): see annotators/speech/models.py.
EMBEDDED_ASR_MODELS = ("base", "tiny.en")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AsrConfig(_Section):
    model: str = Field(
        "base",
        description="'base' (embedded multilingual), 'tiny.en' (embedded, English only, faster), a local "
        "CTranslate2 model directory, or a faster-whisper model name (downloads: needs allow_download)",
    )
    allow_download: bool = Field(False, description="let faster-whisper fetch a model *name* from the hub")
    download_root: str | None = Field(None, description="where downloaded models are cached")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when CTranslate2 sees a GPU")
    device_index: int = 0
    compute_type: str = Field("auto", description="auto = float16 on cuda, int8 on cpu; any CTranslate2 type")
    beam_size: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1, description="30 s windows decoded together in one model call")
    encode_batch_size: int = Field(
        2, ge=1,
        description="on CPU, windows per encoder call (decoding still takes batch_size together): the encoder's "
        "self-attention holds batch x heads x 1500^2 floats, 576 MB for the base model at 8. Same outputs at any "
        "value (checked bit for bit), so it is placement, not in the config hash",
    )
    language: str | None = Field(
        None,
        description="ISO code to force (language_source=config); None = detect per segment with a "
        "multilingual model, 'en' assumed for an English-only model",
    )
    max_new_tokens: int | None = Field(None, ge=1)
    initial_prompt: str | None = None
    # Hallucination guard.
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="speech probability above which a VAD frame is speech")
    word_vad_margin_s: float = Field(
        0.2, ge=0, description="a word is kept when any speech frame lies within this margin of its span"
    )
    no_speech_threshold: float = Field(0.6, ge=0, le=1, description="with log_prob_threshold: whisper's silence rule")
    log_prob_threshold: float = Field(-1.0)
    compression_ratio_threshold: float = Field(2.4, gt=0, description="above this the text is flagged as looping")
    min_speech_s: float = Field(0.2, ge=0, description="segments with less VAD speech than this are not decoded")


class DiarizationConfig(_Section):
    backend: Literal["resemblyzer", "pyannote", "none"] = Field(
        "resemblyzer", description="resemblyzer = embedded (embeddings over VAD regions, clustered)"
    )
    pipeline: str | None = Field(
        None,
        description="pyannote: a local pipeline directory / config.yaml, or a hub name (needs a token and "
        "network, e.g. 'pyannote/speaker-diarization-community-1')",
    )
    token_env: str = Field("HF_TOKEN", description="environment variable holding the hub token (never the token)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_speakers: int | None = Field(None, ge=1)
    max_speakers: int = Field(6, ge=1)
    # resemblyzer backend
    window_s: float = Field(1.5, gt=0.3, description="embedding window")
    hop_s: float = Field(0.25, gt=0, description="embedding hop; the turn-boundary resolution")
    affinity_keep: float = Field(0.2, gt=0, le=1, description="share of each window's neighbours kept in the affinity")
    same_speaker_similarity: float = Field(
        0.92, gt=0, lt=1, description="normalised centroid cosine similarity at which two clusters are one speaker"
    )
    min_multi_speaker_s: float = Field(
        5.0, ge=0, description="segments with less speech than this are one speaker (too short to split reliably)"
    )
    min_speaker_s: float = Field(1.0, ge=0, description="a cluster with less speech is merged into its nearest")
    min_turn_s: float = Field(0.3, ge=0, description="shorter turns are merged into their neighbours")
    merge_gap_s: float = Field(0.5, ge=0, description="same-speaker turns closer than this are joined")


class ParalinguisticsConfig(_Section):
    pitch: Literal["pesto", "pyin", "none"] = Field("pesto", description="F0 tracker")
    pitch_confidence: float = Field(0.5, ge=0, le=1, description="frames under this voicing confidence are unvoiced")
    register_low_hz: float = Field(145.0, gt=0, description="F0 median below this: voice_register=low")
    register_high_hz: float = Field(200.0, gt=0, description="F0 median above this: voice_register=high")
    dnsmos: bool = Field(True, description="DNSMOS P.835 (speechmos); the slowest part of the branch on a CPU")
    dnsmos_hop_s: float = Field(9.0, gt=0, description="hop of DNSMOS's 9 s windows (the reference uses 1 s)")
    # Pluggable attribute classifiers: "package.module:ClassName" (constructed with no args, must have
    # `name` and `predict(audio, sample_rate) -> AttributePrediction`). None = no model: field null, model 'none'.
    gender_model: str | None = None
    age_model: str | None = None
    emotion_model: str | None = None

    @model_validator(mode="after")
    def _registers(self) -> ParalinguisticsConfig:
        if self.register_low_hz >= self.register_high_hz:
            raise ValueError("register_low_hz must be below register_high_hz")
        return self


class SpeechConfig(_Section):
    enabled: bool = True
    asr: AsrConfig = Field(default_factory=AsrConfig)
    diarization: DiarizationConfig = Field(default_factory=DiarizationConfig)
    paralinguistics: ParalinguisticsConfig = Field(default_factory=ParalinguisticsConfig)
    caption: bool = Field(True, description="build the plain-English speech caption")
    resources: ActorResources = Field(default_factory=ActorResources)
