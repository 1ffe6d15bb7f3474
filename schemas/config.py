"""The job configuration: one pydantic model, loaded from YAML plus `--set a.b=c` overrides.

Unknown keys are errors (a typo must not silently fall back to a default) and every error names its key.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.general_config import GeneralConfig
from schemas.music_config import MusicConfig
from schemas.resources import ActorResources
from schemas.speech_config import SpeechConfig
from schemas.version import SCHEMA_VERSION


class ConfigError(ValueError):
    """A bad job configuration; the message names each bad key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    sample_rate: Literal[16000] = Field(16000, description="decode target: fixed, every model runs at 16 kHz "
                                        "(annotators.common.SAMPLE_RATE)")
    extensions: list[str] = Field(
        default_factory=lambda: ["wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "aiff", "aif", "wma",
                                 "webm", "mp4", "mka", "caf", "au", "w64"],
        description="audio file extensions in directories; other files there are quarantined unread",
    )
    window_s: float = Field(600.0, gt=10, description="longer sources are decoded and segmented in windows")
    max_file_bytes: int = Field(20 * 1024**3, gt=0, description="larger files are quarantined unread")
    min_source_s: float = Field(0.2, ge=0, description="shorter sources are quarantined as too short")
    read_parallelism: int | None = Field(None, ge=1, description="blocks of the source list; None = auto")


class SegmenterConfig(_Section):
    min_segment_s: float = Field(2.0, gt=0)
    max_segment_s: float = Field(30.0, gt=0)
    hop_s: float = Field(0.02, gt=0, le=0.1, description="frame hop of the evidence curves")
    silence_db: float = Field(-50.0, description="absolute frame level (dBFS) under which a frame is silent")
    silence_rel_db: float = Field(35.0, gt=0, description="or this far under the source's loud level")
    min_pause_s: float = Field(0.12, ge=0, description="a gap shorter than this is not a pause")
    split_silence_s: float = Field(1.0, gt=0, description="silence this long always separates segments")
    pause_margin_db: float = Field(6.0, ge=0, description="a pause may sit this far above the noise floor")
    segment_penalty: float = Field(1.2, ge=0, description="cost of one more cut; weaker boundaries are skipped")
    target_segment_s: float = Field(10.0, gt=0, description="segments shorter than this pay short_segment_cost")
    short_segment_cost: float = Field(0.6, ge=0, description="cost of a segment far shorter than the target")
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    use_vad: bool = True
    use_yamnet: bool = True
    class_change_min_s: float = Field(2.0, gt=0, description="a sound class must hold this long on each side")
    novelty_weight: float = Field(1.0, ge=0)
    edge_pad_s: float = Field(0.05, ge=0, description="kept around the trimmed content")
    resources: ActorResources = Field(default_factory=lambda: ActorResources(num_cpus=0.5, batch_size=1))

    @model_validator(mode="after")
    def _lengths(self) -> SegmenterConfig:
        if self.min_segment_s >= self.max_segment_s:
            raise ValueError(
                f"min_segment_s ({self.min_segment_s}) must be smaller than max_segment_s ({self.max_segment_s})"
            )
        return self


class RouterConfig(_Section):
    speech_threshold: float = Field(0.15, ge=0, le=1, description="speech share that routes to `speech`")
    music_threshold: float = Field(0.25, ge=0, le=1, description="music share that routes to `music`")
    general_threshold: float = Field(0.25, ge=0, le=1, description="other-sound share that routes to `general`")
    general_class_score: float = Field(
        0.1, ge=0, le=1, description="a segment also goes to `general` when one of its top classes that is "
                                     "neither speech, music, silence nor a room/recording class averages this "
                                     "(laughter in speech, a bell in music); 1 = off")


class CaptionConfig(_Section):
    """The unified-caption merger: the embedded template (default) or an LLM behind any OpenAI-compatible API."""

    merger: Literal["template", "llm"] = Field("template", description="template (no model) or llm")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="model name the endpoint serves")
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key")
    response_format: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", description="structured output form: json_schema (vLLM, hosted), json_object + schema "
                            "(llama.cpp server); auto detects it once per endpoint")
    timeout_s: float = Field(60.0, gt=0, description="read timeout of one request")
    connect_timeout_s: float = Field(5.0, gt=0, description="connect timeout of one request")
    max_in_flight: int = Field(4, ge=1, le=256, description="concurrent requests per caption task")
    max_retries: int = Field(3, ge=0, le=10, description="retries after a timeout, 429 or 5xx")
    backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles each retry, with jitter")
    max_backoff_s: float = Field(8.0, ge=0, description="longest retry delay (also caps Retry-After)")
    check_retries: int = Field(1, ge=0, le=5, description="retries with the rejection reason after a failed check")
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(300, ge=32, le=4096)
    cache: bool = Field(True, description="content-addressed reply cache under OUT/caption_cache")

    @model_validator(mode="after")
    def _llm_needs_endpoint(self) -> CaptionConfig:
        if self.merger == "llm" and not (self.base_url and self.model):
            raise ValueError("caption.merger: llm needs caption.base_url and caption.model")
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ValueError("caption.api_key_env must be the NAME of an environment variable "
                             "(e.g. OPENAI_API_KEY), never the key itself")
        return self


class ShardConfig(_Section):
    target_shard_mb: float = Field(256.0, gt=0, description="a shard is closed once it reaches this size")
    write_buffer_mb: float = Field(
        128.0, gt=0, description="annotated rows (float32 audio, ~3.5x their FLAC size) gathered in the object store "
        "before a write task starts: bounds the job's memory whatever the corpus length; a task writes shards of "
        "up to target_shard_mb from what it got, so full-size shards need about 3.5 x target_shard_mb here")
    audio_format: Literal["flac"] = "flac"


class RayDataConfig(_Section):
    """How Ray Data streams the job's blocks (placement: not part of the config hash)."""

    object_store_limit_mb: float | None = Field(
        1024.0, gt=0, description="bytes of blocks Ray Data keeps in flight between the stages (its "
        "resource_limits.object_store_memory); a segmenter that runs ahead of slower stages then waits instead of "
        "filling the object store. None = Ray Data's default, half the object store")
    tasks_per_stage: int | None = Field(
        None, ge=1, description="most tasks of one light task stage (read, probe, route+caption, write) running at "
        "once: each holds a Ray worker process (~140 MiB before its blocks). None = one per two CPUs of the cluster "
        "when the job starts (pipeline/resources.task_pool_size); raise it on a cluster that grows after the start")
    target_block_mb: float = Field(
        0.1, gt=0, description="largest block a stage's outputs are gathered into before they go downstream (Ray "
        "Data's target_max_block_size, 128 MB by default): 0.1 MB is 1.6 s of float32 audio at 16 kHz, so nearly "
        "every segment leaves a stage as soon as it is yielded. Ray Data merges a task's outputs up to this size "
        "before any leaves it: at 32 MB the bench corpus (650 s, 41 MB of audio) left the segmenter in 2 blocks "
        "and each stage ran only after the one before had finished (the first caption 65 s after Ray was up, "
        "against 40 s at 2 MB); at 2 MB a branch actor's first segment waited for the rest of its batch")


class S3Config(_Section):
    """Object-store access for s3:// inputs and outputs; anything unset falls back to the standard AWS
    environment variables and credential chain. Never logged, masked in report.json (pipeline/redact.py)."""

    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:9000 for an S3-compatible server")
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None


class JobConfig(_Section):
    """Everything a corpus-annotation job needs besides its inputs and output."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)
    music: MusicConfig = Field(default_factory=MusicConfig)
    general: GeneralConfig = Field(default_factory=GeneralConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)
    s3: S3Config = Field(default_factory=S3Config)
    ray_data: RayDataConfig = Field(default_factory=RayDataConfig)
    ray_address: str | None = Field(None, description="None = start or join a local Ray instance")
    schema_version: str = SCHEMA_VERSION

    # ------------------------------------------------------------------ hashes
    def config_hash(self) -> str:
        """Hash of everything that changes the output (placement and addresses excluded)."""
        return _hash(_strip_placement(self.model_dump(mode="json")))

    def segmentation_hash(self) -> str:
        """Hash of what decides where segments start and end; part of every segment key."""
        seg = _strip_placement(self.segmenter.model_dump(mode="json"))
        return _hash({"sample_rate": self.ingest.sample_rate, "window_s": self.ingest.window_s, "segmenter": seg})


# settings that change where and how fast a job runs, never what it writes: not in the config hash
PLACEMENT_KEYS = frozenset({"resources", "ray_address", "s3", "ray_data", "encode_batch_size"})


def _strip_placement(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip_placement(v) for k, v in d.items() if k not in PLACEMENT_KEYS}
    return d


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """Parse `a.b=value` strings; values are read as YAML scalars (20 -> int, true -> bool, [a,b] -> list)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. segmenter.max_segment_s=20")
        k, v = item.split("=", 1)
        out.append((k.strip(), yaml.safe_load(v) if v.strip() else None))
    return out


def read_config_tree(path: str | Path | None, overrides: list[str] | None) -> dict:
    """The YAML mapping at `path` (or {}) with `--set KEY=VALUE` overrides applied; ConfigError when unreadable."""
    tree: dict = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {path}") from e
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)  # not str(e): its snippet could show a credential
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: "
                              f"{getattr(e, 'problem', None) or type(e).__name__}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        tree = loaded or {}
    for k, v in parse_overrides(overrides or []):
        _set_dotted(tree, k, v)
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> JobConfig:
    """Load a JobConfig from YAML (or defaults) and apply overrides; raise ConfigError naming bad keys."""
    return config_from_dict(read_config_tree(path, overrides))


def validation_error(e: ValidationError, what: str) -> ConfigError:
    """One line per problem, each naming its dotted key."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return ConfigError(f"invalid {what}:\n" + "\n".join(lines))


def config_from_dict(tree: dict) -> JobConfig:
    try:
        return JobConfig.model_validate(tree)
    except ValidationError as e:
        raise validation_error(e, "job config") from None
