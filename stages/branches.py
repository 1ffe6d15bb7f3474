"""SpeechAnnotator, MusicAnnotator, SoundEventAnnotator: Ray actor stages around the Ray-free annotators.

Each annotates only the segment rows routed to its branch and passes every other row through. The model
code lives in `annotators/<branch>/`; its factory decides what runs (None = pass-through), so filling a
branch never changes `pipeline/`.
"""

from __future__ import annotations

import numpy as np

from annotators.base import BranchInput
from schemas.annotation import SegmentAnnotation
from schemas.config import JobConfig
from stages.rows import add_stats, audio_of, evidence_of, quarantine, segment_of, timed, to_batch, to_rows


class BranchStage:
    branch: str = ""  # route label this stage serves
    field: str = ""  # SegmentAnnotation field that receives the result
    caption_field: str = ""  # SegmentAnnotation field that receives the branch caption

    def __init__(self, cfg: dict, num_threads: int = 1):
        self.cfg = JobConfig.model_validate(cfg)
        self.num_threads = num_threads
        self._annotator = None
        self._loaded = False

    @property
    def annotator(self):
        """Built on the first batch that needs it: an actor whose branch gets no rows loads no model."""
        if not self._loaded:  # no torch here: the annotator sizes its own pools (music/general run ONNX only)
            self._annotator = self.build(self.cfg, self.num_threads)  # placement decides, annotators obey
            self.models = self._annotator.models() if self._annotator is not None else {}
            self._loaded = True
        return self._annotator

    def build(self, cfg: JobConfig, num_threads: int):
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = to_rows(batch)
        segs = {i: segment_of(r) for i, r in enumerate(rows) if r["kind"] == "segment"}
        todo = [i for i, seg in segs.items() if self.branch in seg.routes]
        if not todo or self.annotator is None:
            return to_batch(rows)
        items = [BranchInput(audio_of(rows[i]), segs[i].sample_rate, segs[i], evidence_of(rows[i])) for i in todo]
        with timed() as t:
            try:
                results = self.annotator.annotate(items)
                errors = {}
            except Exception:  # noqa: BLE001 - retry one by one so one bad segment cannot sink the batch
                results, errors = [], {}
                for i, item in zip(todo, items, strict=True):
                    try:
                        results.extend(self.annotator.annotate([item]))
                    except Exception as e:  # noqa: BLE001
                        results.append(None)
                        errors[i] = e
        per_row = t() / len(todo)
        for i, res in zip(todo, results, strict=True):
            seg = segs[i]
            if i in errors:
                e = errors[i]
                rows[i] = quarantine(seg.source_uri, self.branch, type(e).__name__, str(e),
                                     sha256=seg.source_sha256, key=seg.key, stats=rows[i]["stats"])
                continue
            setattr(seg, self.field, res)
            setattr(seg, self.caption_field, res.caption or None)
            reroute_after(self.branch, seg)
            seg.models.update(self.models)
            rows[i]["payload"] = seg.model_dump_json()
            add_stats(rows[i], self.branch, per_row)
        return to_batch(rows)


class SpeechAnnotator(BranchStage):
    branch, field, caption_field = "speech", "speech", "speech_caption"

    def build(self, cfg: JobConfig, num_threads: int):
        from annotators.speech import build_speech_annotator

        return build_speech_annotator(cfg.speech, num_threads) if cfg.speech.enabled else None


class MusicAnnotator(BranchStage):
    branch, field, caption_field = "music", "music", "music_caption"

    def build(self, cfg: JobConfig, num_threads: int):
        from annotators.music import build_music_annotator

        return build_music_annotator(cfg.music, num_threads) if cfg.music.enabled else None


class SoundEventAnnotator(BranchStage):
    branch, field, caption_field = "general", "sound", "sound_caption"

    def build(self, cfg: JobConfig, num_threads: int):
        from annotators.general import build_sound_event_annotator

        return build_sound_event_annotator(cfg.general, num_threads) if cfg.general.enabled else None


def reroute_after(branch: str, seg: SegmentAnnotation) -> None:
    """Routes made consistent with what a branch found, for the branches that run after it.

    The router reads frame shares; the speech branch hears whether there are words. A segment routed to speech
    in which the speech branch finds no words is not speech only: it also goes to `general` (crowd babble,
    a voice-like noise); with no words and no speaker either it is not speech at all, and its speech caption
    (which would say so) is dropped with the route, so no caption says "speech" and "no speech" together.
    """
    if branch != "speech" or seg.speech is None or "speech" not in seg.routes:
        return
    if seg.speech.transcript.strip():
        return
    if "general" not in seg.routes:
        seg.routes = [*seg.routes, "general"]
    if seg.speech.n_speakers == 0:
        seg.routes = [r for r in seg.routes if r != "speech"]
        seg.speech_caption = None
