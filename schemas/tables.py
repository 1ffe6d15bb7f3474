"""Arrow schemas of the tables a job writes (manifest, quarantine) and the row builders that fill them.

The manifest has one row per segment and no audio; nested lists are plain Arrow lists/structs so that
DuckDB, pandas and HF `datasets` read them directly.
"""

from __future__ import annotations

import json

import pyarrow as pa

from schemas.annotation import QuarantineRecord, SegmentAnnotation
from schemas.version import SCHEMA_VERSION

_WORD = pa.struct([("word", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                   ("probability", pa.float64()), ("speaker", pa.string())])
_TURN = pa.struct([("speaker", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64())])
_TAG = pa.struct([("label", pa.string()), ("score", pa.float64())])
_EVENT = pa.struct([("label", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                    ("score", pa.float64())])

MANIFEST_SCHEMA = pa.schema([
    # identity and lineage
    ("key", pa.string()),
    ("source_uri", pa.string()),
    ("source_sha256", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("start_sample", pa.int64()),
    ("end_sample", pa.int64()),
    ("sample_rate", pa.int32()),
    ("cut_reasons", pa.list_(pa.string())),
    # routing
    ("routes", pa.list_(pa.string())),
    ("speech_share", pa.float64()),
    ("music_share", pa.float64()),
    ("general_share", pa.float64()),
    ("top_classes", pa.list_(_TAG)),
    # speech branch
    ("transcript", pa.string()),
    ("language", pa.string()),
    ("language_probability", pa.float64()),
    ("language_source", pa.string()),
    ("words", pa.list_(_WORD)),
    ("no_speech_prob", pa.float64()),
    ("avg_logprob", pa.float64()),
    ("compression_ratio", pa.float64()),
    ("asr_model", pa.string()),
    ("speakers", pa.list_(_TURN)),
    ("n_speakers", pa.int32()),
    ("speaker_f0_median_hz", pa.float64()),
    ("voice_register", pa.string()),
    ("words_per_s", pa.float64()),
    ("speech_snr_db", pa.float64()),
    ("dnsmos_ovrl", pa.float64()),
    ("hallucination_dropped", pa.list_(pa.string())),
    ("speech_caption", pa.string()),
    # music branch
    ("tempo_bpm", pa.float64()),
    ("beats_s", pa.list_(pa.float64())),
    ("music_key", pa.string()),
    ("key_confidence", pa.float64()),
    ("tonality_confidence", pa.float64()),
    ("loudness_lufs", pa.float64()),
    ("music_tags", pa.list_(_TAG)),
    ("music_caption", pa.string()),
    # general-audio branch
    ("events", pa.list_(_EVENT)),
    ("scene_tags", pa.list_(pa.string())),
    ("general_tags", pa.list_(_TAG)),
    ("general_caption", pa.string()),
    # unified caption and provenance
    ("caption", pa.string()),
    ("short_caption", pa.string()),
    ("caption_source", pa.string()),
    ("caption_model", pa.string()),
    ("caption_prompt_id", pa.string()),
    ("caption_rejections", pa.list_(pa.string())),
    ("shard", pa.string()),
    ("models", pa.string()),  # JSON {stage: {name, version}}
    ("config_hash", pa.string()),
    ("schema_version", pa.string()),
])

# A named caption table (`eventcap recaption OUT --name NAME` -> OUT/captions/NAME/*.parquet), keyed by segment key.
# The caption columns are the manifest's own (one name and type per concept), plus the caption config's hash.
CAPTIONS_SCHEMA = pa.schema(
    [MANIFEST_SCHEMA.field(n) for n in ("key", "caption", "short_caption", "caption_source", "caption_model",
                                        "caption_prompt_id", "caption_rejections",
                                        "shard")]  # the annotate shard the segment lives in
    + [pa.field("caption_config_hash", pa.string()), MANIFEST_SCHEMA.field("schema_version")]
)

QUARANTINE_SCHEMA = pa.schema([
    ("source_uri", pa.string()),
    ("stage", pa.string()),
    ("error", pa.string()),
    ("message", pa.string()),
    ("source_sha256", pa.string()),
    ("key", pa.string()),
    ("time", pa.string()),
    ("schema_version", pa.string()),
])


def manifest_row(seg: SegmentAnnotation, shard: str) -> dict:
    """Flatten one SegmentAnnotation into a manifest row (MANIFEST_SCHEMA)."""
    sp, mu, so = seg.speech, seg.music, seg.general
    loudness = next((b.loudness_lufs for b in (mu, sp, so) if b is not None and b.loudness_lufs is not None), None)
    return {
        "key": seg.key,
        "source_uri": seg.source_uri,
        "source_sha256": seg.source_sha256,
        "start_s": seg.start_s,
        "end_s": seg.end_s,
        "duration_s": seg.duration_s,
        "start_sample": seg.start_sample,
        "end_sample": seg.end_sample,
        "sample_rate": seg.sample_rate,
        "cut_reasons": list(seg.cut_reasons),
        "routes": list(seg.routes),
        "speech_share": seg.speech_share,
        "music_share": seg.music_share,
        "general_share": seg.general_share,
        "top_classes": [t.model_dump() for t in seg.top_classes],
        "transcript": sp.transcript if sp else None,
        "language": sp.language if sp else None,
        "language_probability": sp.language_probability if sp else None,
        "language_source": sp.language_source if sp else None,
        "words": [w.model_dump() for w in sp.words] if sp else None,
        "no_speech_prob": sp.no_speech_prob if sp else None,
        "avg_logprob": sp.avg_logprob if sp else None,
        "compression_ratio": sp.compression_ratio if sp else None,
        "asr_model": sp.asr_model if sp else None,
        "speakers": [t.model_dump() for t in sp.speakers] if sp else None,
        "n_speakers": sp.n_speakers if sp else None,
        "speaker_f0_median_hz": sp.f0_median_hz if sp else None,
        "voice_register": sp.voice_register if sp else None,
        "words_per_s": sp.words_per_s if sp else None,
        "speech_snr_db": sp.snr_db if sp else None,
        "dnsmos_ovrl": sp.dnsmos_ovrl if sp else None,
        "hallucination_dropped": list(sp.hallucination_dropped) if sp else None,
        "speech_caption": seg.speech_caption,
        "tempo_bpm": mu.tempo_bpm if mu else None,
        "beats_s": list(mu.beats_s) if mu else None,
        "music_key": mu.music_key if mu else None,
        "key_confidence": mu.key_confidence if mu else None,
        "tonality_confidence": mu.tonality_confidence if mu else None,
        "loudness_lufs": loudness,
        "music_tags": [t.model_dump() for t in mu.tags] if mu else None,
        "music_caption": seg.music_caption,
        "events": [e.model_dump() for e in so.events] if so else None,
        "scene_tags": list(so.scene_tags) if so else None,
        "general_tags": [t.model_dump() for t in so.tags] if so else None,
        "general_caption": seg.general_caption,
        "caption": seg.caption,
        "short_caption": seg.short_caption,
        "caption_source": seg.caption_source,
        "caption_model": seg.caption_model,
        "caption_prompt_id": seg.caption_prompt_id,
        "caption_rejections": list(seg.caption_rejections),
        "shard": shard,
        "models": json.dumps({k: v.model_dump() for k, v in seg.models.items()}, sort_keys=True),
        "config_hash": seg.config_hash,
        "schema_version": seg.schema_version,
    }


def quarantine_row(rec: QuarantineRecord) -> dict:
    return {**rec.model_dump(), "schema_version": SCHEMA_VERSION}
