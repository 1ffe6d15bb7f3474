"""The general-audio branch annotator: sound events with onset/offset, scene, loudness, SNR, caption.
No Ray here."""

from __future__ import annotations

import librosa
import numpy as np

from annotators.base import BranchInput
from annotators.common.levels import loudness_lufs
from annotators.common.yamnet import (
    HOP_S,
    MUSIC_INDICES,
    N_CLASSES,
    SILENCE_INDEX,
    SPEECH_INDICES,
    WINDOW_S,
    LazyYamNet,
    YamNet,
    class_names,
)
from annotators.common.yamnet import package_version as yamnet_version
from annotators.general.events import (
    BandEnvelope,
    Event,
    coarse_events,
    foreground_snr_db,
    merge_same_class,
    refine_event,
    sound_extent,
)
from schemas.annotation import GeneralAudioAnnotation, ModelInfo, SoundEvent, Tag
from schemas.general_config import GeneralConfig

# Acoustic-scene classes (room, outdoors, recording kind): scene tags, never events.
SCENE_ONLY_INDICES = (500, 501, 502, 503, 504, 505, 506, 508, 520)
# Speech-like vocal sounds a person makes (laughter, crying, coughs…) stay events: only SPEECH_INDICES are speech.


class GeneralAudioAnnotator(LazyYamNet):
    """Annotates general-audio segments; the YAMNet session loads once, on first use, and runs only for
    segments that come without the segmenter's posteriors."""

    def __init__(self, cfg: GeneralConfig | None = None, num_threads: int = 1):
        self.cfg = cfg or GeneralConfig()
        self.threads = num_threads  # as placed (pipeline/resources.py)
        self._yamnet_model: YamNet | None = None
        self._labels = class_names()
        excluded = {SILENCE_INDEX, *SCENE_ONLY_INDICES}
        if not self.cfg.include_speech:
            excluded |= set(SPEECH_INDICES)
        if not self.cfg.include_music:
            excluded |= set(MUSIC_INDICES)
        self._event_classes = np.array([c for c in range(N_CLASSES) if c not in excluded])
        not_scene = {SILENCE_INDEX, *SPEECH_INDICES, *MUSIC_INDICES}
        self._scene_classes = np.array([c for c in range(N_CLASSES) if c not in not_scene])

    def models(self) -> dict[str, ModelInfo]:
        return {
            "general.events": ModelInfo(name=YamNet.name, version=yamnet_version()),
            "general.dsp": ModelInfo(name="librosa", version=librosa.__version__),
        }

    def annotate(self, items: list[BranchInput]) -> list[GeneralAudioAnnotation]:
        return [self.annotate_one(item) for item in items]

    def annotate_one(self, item: BranchInput) -> GeneralAudioAnnotation:
        cfg = self.cfg
        audio = np.asarray(item.audio, dtype=np.float32)
        sr = item.sample_rate
        duration = audio.size / sr if sr else 0.0
        if audio.size < int(0.1 * sr) or not np.any(audio):
            return GeneralAudioAnnotation(caption="Silence: no sound events.")

        ev_in = item.evidence
        if ev_in is not None and ev_in.yamnet_scores is not None and len(ev_in.yamnet_scores) > 0:
            scores, hop_s, window_s = np.asarray(ev_in.yamnet_scores, np.float32), ev_in.yamnet_hop_s, ev_in.yamnet_window_s
        else:
            scores, hop_s, window_s = self._yamnet.scores(audio), HOP_S, WINDOW_S

        coarse = coarse_events(scores, self._event_classes, hop_s, window_s, duration, cfg.on_threshold,
                               cfg.off_threshold, cfg.smooth_frames)
        env = BandEnvelope(audio, sr)
        events: list[Event] = []
        for ev, a, b in coarse:
            if cfg.refine:
                events += refine_event(ev, a, b, env, hop_s, window_s, duration, cfg.refine_level,
                                       cfg.min_band_snr_db, cfg.split_gap_s, cfg.min_event_s, cfg.split_depth_db)
            elif ev.end_s - ev.start_s >= cfg.min_event_s:
                events.append(ev)
        events = merge_same_class(events, cfg.merge_gap_s)
        if not events:
            events = self._short_sound_event(scores, env, duration)
        events = sorted(events, key=lambda e: (-e.score, -e.mean))[: cfg.max_events]
        events.sort(key=lambda e: (e.start_s, -e.score, -e.mean))  # the caption keeps this order among ties

        mean = scores.mean(axis=0) if scores.size else np.zeros(N_CLASSES)
        scene = [self._labels[c] for c in self._scene_classes[np.argsort(-mean[self._scene_classes])]
                 if mean[c] >= cfg.scene_threshold][: cfg.max_scene_tags]

        tag_classes = [c for c in np.argsort(-mean) if c != SILENCE_INDEX and mean[c] > 0][: cfg.max_tags]
        ann = GeneralAudioAnnotation(
            events=[SoundEvent(label=self._labels[e.cls], start_s=round(e.start_s, 3), end_s=round(e.end_s, 3),
                               score=round(e.score, 4)) for e in events],
            scene_tags=scene,
            tags=[Tag(label=self._labels[c], score=round(float(mean[c]), 4)) for c in tag_classes],
            loudness_lufs=loudness_lufs(audio, sr),
            snr_db=foreground_snr_db(events, env),
        )
        ann.caption = general_caption(ann)
        return ann

    def _short_sound_event(self, scores: np.ndarray, env: BandEnvelope, duration: float) -> list[Event]:
        """A short sound (a hit, a click, a 0.3 s cowbell) fills one or two YAMNet windows, whose posteriors
        rarely climb to `on_threshold`: when its sound lasts at most `clip_event_max_s` and its strongest event
        class (mean over the windows) is confident, it is one event of that class over the sound's extent
        (where the segment stays within 35 dB of its peak)."""
        cfg = self.cfg
        if scores.size == 0:
            return []
        start, end = sound_extent(env)
        if end - start > cfg.clip_event_max_s or end - start < cfg.min_event_s:
            return []
        mean = scores[:, self._event_classes].mean(axis=0)
        j = int(np.argmax(mean))
        if mean[j] < cfg.clip_event_min_score:
            return []
        c = int(self._event_classes[j])
        return [Event(c, round(start, 3), round(min(end, duration), 3), float(scores[:, c].max()), float(mean[j]))]


# ------------------------------------------------------------------ caption
def _short(label: str) -> str:
    """AudioSet display names list synonyms after a comma ("Beep, bleep"): keep the first, lower case."""
    return label.split(",")[0].strip().lower()


def group_same_sound(events: list[SoundEvent]) -> list[list[SoundEvent]]:
    """Events of different classes describing one sound (they overlap by half the shorter one) grouped."""
    groups: list[list[SoundEvent]] = []
    for ev in sorted(events, key=lambda e: (-e.score, e.start_s)):
        for g in groups:
            lead = g[0]
            overlap = min(lead.end_s, ev.end_s) - max(lead.start_s, ev.start_s)
            if overlap >= 0.5 * min(lead.end_s - lead.start_s, ev.end_s - ev.start_s):
                g.append(ev)
                break
        else:
            groups.append([ev])
    return sorted(groups, key=lambda g: g[0].start_s)


def general_caption(ann: GeneralAudioAnnotation, max_groups: int = 8) -> str:
    """Plain English stating which events happen when, the scene, loudness and SNR."""
    sentences = []
    groups = group_same_sound(ann.events)
    if groups:
        parts = []
        for g in groups[:max_groups]:
            lead = g[0]
            others = [_short(e.label) for e in g[1:3] if _short(e.label) != _short(lead.label)]
            also = f" (also heard as {', '.join(others)})" if others else ""
            parts.append(f"{_short(lead.label)} from {lead.start_s:.1f} s to {lead.end_s:.1f} s{also}")
        more = f", and {len(groups) - max_groups} more" if len(groups) > max_groups else ""
        sentences.append("Sound events: " + "; ".join(parts) + more + ".")
    else:
        sentences.append("No distinct sound events.")
    if ann.scene_tags:
        sentences.append("Scene: " + ", ".join(_short(t) for t in ann.scene_tags) + ".")
    levels = []
    if ann.loudness_lufs is not None:
        levels.append(f"loudness {ann.loudness_lufs:.0f} LUFS")
    if ann.snr_db is not None:
        levels.append(f"events {ann.snr_db:.0f} dB above the background")
    if levels:
        sentences.append(levels[0][0].upper() + "; ".join(levels)[1:] + ".")
    return " ".join(sentences)
