"""The music branch annotator: tempo and beats, meter, key, loudness, tags, lyrics, caption. No Ray here."""

from __future__ import annotations

import librosa
import numpy as np

from annotators.base import BranchInput
from annotators.common.levels import dynamic_range_db, loudness_lufs
from annotators.common.yamnet import LazyYamNet, YamNet, class_names
from annotators.common.yamnet import package_version as yamnet_version
from annotators.music.features import spectral_features
from annotators.music.rhythm import Rhythm, analyse_rhythm
from annotators.music.tags import music_tags
from annotators.music.tonality import chromagram, estimate_key, tonal_peak_share
from schemas.annotation import ModelInfo, MusicAnnotation, Tag
from schemas.music_config import MusicConfig

CHROMA_HOP = 2048  # 128 ms


class MusicAnnotator(LazyYamNet):
    """Annotates music segments; YAMNet (and basic-pitch when configured) load once, in the constructor."""

    def __init__(self, cfg: MusicConfig | None = None, num_threads: int = 1):
        self.cfg = cfg or MusicConfig()
        self.threads = num_threads  # as placed (pipeline/resources.py)
        self._yamnet_model: YamNet | None = None  # used only when a segment has no evidence
        self._labels = class_names()
        self._notes = None
        if self.cfg.transcribe_notes:
            from annotators.music.notes import NoteTranscriber

            self._notes = NoteTranscriber(num_threads=self.threads)

    def models(self) -> dict[str, ModelInfo]:
        out = {
            "music.tags": ModelInfo(name=YamNet.name, version=yamnet_version()),
            "music.dsp": ModelInfo(name="librosa", version=librosa.__version__),
            "music.loudness": ModelInfo(name="pyloudnorm", version=_version("pyloudnorm")),
        }
        if self._notes is not None:
            from annotators.music.notes import basic_pitch_version

            out["music.notes"] = ModelInfo(name="basic-pitch icassp_2022 (onnx)", version=basic_pitch_version())
        return out

    def annotate(self, items: list[BranchInput]) -> list[MusicAnnotation]:
        return [self.annotate_one(item) for item in items]

    def annotate_one(self, item: BranchInput) -> MusicAnnotation:
        cfg = self.cfg
        audio = np.asarray(item.audio, dtype=np.float32)
        sr = item.sample_rate
        duration = audio.size / sr if sr else 0.0
        if audio.size < int(0.1 * sr) or not np.any(audio):
            ann = MusicAnnotation()
            ann.caption = "Silent or too short to analyse as music."
            return ann

        spec = spectral_features(audio, sr)
        chroma = chromagram(audio, sr, hop=CHROMA_HOP)
        rhythm = analyse_rhythm(
            spec.onset_env, spec.low_db, spec.full_db, spec.fps, duration,
            prior_bpm=cfg.tempo_prior_bpm, min_bpm=cfg.min_bpm, max_bpm=cfg.max_bpm,
            octave_ratio=cfg.octave_ratio, min_confidence=cfg.min_tempo_confidence,
            meter_contrast_db=cfg.meter_contrast_db, chroma=chroma, chroma_fps=sr / CHROMA_HOP,
            onset_feats=spec.onsets if cfg.multi_feature_tempo else None,
        )
        key = estimate_key(chroma.sum(axis=1), cfg.key_profile)
        tonality = tonal_peak_share(audio, sr)
        tonal = tonality is not None and (tonality >= cfg.min_tonality or (
            tonality >= cfg.min_tonality_clear_key and key.confidence is not None and key.confidence >= cfg.clear_key))
        key_name = key.name if tonal and key.confidence is not None and key.confidence >= cfg.min_key_confidence \
            else None

        scores = item.evidence.yamnet_scores if item.evidence is not None else None
        if scores is None or len(scores) == 0:
            scores = self._yamnet.scores(audio)
        tags = music_tags(
            np.asarray(scores, dtype=np.float32), self._labels, tag_threshold=cfg.tag_threshold,
            max_tags=cfg.max_tags, genre_threshold=cfg.genre_threshold,
            instrument_threshold=cfg.instrument_threshold, vocal_threshold=cfg.vocal_threshold,
        )
        lyrics = None
        speech = item.segment.speech if item.segment is not None else None
        if cfg.lyrics_from_speech and tags.vocals and speech is not None and speech.transcript.strip():
            lyrics = speech.transcript.strip()

        melody = None
        if self._notes is not None:
            from annotators.music.notes import melody_range

            melody = melody_range(self._notes.transcribe(
                audio, sr, frame_threshold=cfg.note_frame_threshold, onset_threshold=cfg.note_onset_threshold,
                min_note_s=cfg.min_note_s))

        ann = MusicAnnotation(
            tempo_bpm=_round(rhythm.tempo_bpm, 2),
            tempo_confidence=_round(rhythm.tempo_confidence, 3),
            beats_s=rhythm.beats_s,
            time_signature=rhythm.time_signature,
            music_key=key_name,
            key_confidence=_round(key.confidence, 3) if key_name else None,
            tonality_confidence=tonality,
            loudness_lufs=loudness_lufs(audio, sr),
            dynamic_range_db=dynamic_range_db(audio, sr),
            onset_density=_round(rhythm.onset_density, 3),
            spectral_centroid_hz=_round(spec.centroid_hz, 1),
            tags=[Tag(label=lab, score=round(s, 4)) for lab, s in tags.tags],
            genres=tags.genres,
            instruments=tags.instruments,
            vocals=tags.vocals,
            lyrics=lyrics,
            melody_range_midi=melody,
        )
        ann.caption = music_caption(ann, rhythm)
        return ann


# ------------------------------------------------------------------ caption
def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _brightness(centroid_hz: float) -> str:
    """A word for the spectral centroid (16 kHz audio: piano chords ~700 Hz, a violin ~1900, drums ~2500)."""
    if centroid_hz < 700:
        return "dark"
    if centroid_hz < 1500:
        return "warm"
    if centroid_hz < 2500:
        return "balanced"
    return "bright"


def _midi_name(m: int) -> str:
    return librosa.midi_to_note(m, unicode=False)


def music_caption(ann: MusicAnnotation, rhythm: Rhythm | None = None) -> str:
    """Plain English stating the measured facts, e.g. "Music at about 120 BPM in 4/4, in A minor, ..."."""
    first = "Music"
    if ann.tempo_bpm is not None:
        first += f" at about {ann.tempo_bpm:.0f} BPM"
        if ann.time_signature:
            first += f" in {ann.time_signature}"
    if ann.music_key:
        first += f", in {ann.music_key}" if ann.tempo_bpm is not None else f" in {ann.music_key}"
    parts = [first]
    if ann.instruments:
        parts.append("with " + _join([i.split(",")[0].lower() for i in ann.instruments]))
    if ann.genres:
        parts.append("genre: " + _join([g.lower() for g in ann.genres]))
    sentences = [", ".join(parts) + "."]
    if ann.vocals:
        sentences.append(f'Vocals present; lyrics: "{ann.lyrics}".' if ann.lyrics else "Vocals present.")
    else:
        sentences.append("Instrumental.")
    if ann.melody_range_midi:
        lo, hi = ann.melody_range_midi
        sentences.append(f"Notes range from {_midi_name(lo)} to {_midi_name(hi)}.")
    facts = []
    if ann.loudness_lufs is not None:
        facts.append(f"loudness {ann.loudness_lufs:.0f} LUFS")
    if ann.dynamic_range_db is not None:
        facts.append(f"dynamic range {ann.dynamic_range_db:.0f} dB")
    if ann.onset_density is not None:
        facts.append(f"{ann.onset_density:.1f} onsets per second")
    if ann.spectral_centroid_hz is not None:
        facts.append(f"{_brightness(ann.spectral_centroid_hz)} timbre (spectral centroid "
                     f"{ann.spectral_centroid_hz:.0f} Hz)")
    if facts:
        sentences.append(facts[0][0].upper() + ", ".join(facts)[1:] + ".")
    return " ".join(sentences)


def _round(x: float | None, nd: int) -> float | None:
    return None if x is None else round(float(x), nd)


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return ""
