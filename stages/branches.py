"""SpeechStage, MusicStage, GeneralAudioStage: Ray actor stages around the Ray-free branch annotators.

Each annotates only the segment rows routed to its branch (decided from the `routes` column, unparsed) and
passes every other row through. The model code lives in `annotators/<branch>/`; its factory decides what
runs (None = pass-through), so filling a branch never changes `pipeline/`.
"""

from __future__ import annotations

import threading

from annotators.base import BranchInput
from schemas.annotation import SegmentAnnotation
from schemas.config import JobConfig
from stages.base import RowStage
from stages.rows import Row


class BranchStage(RowStage):
    """The segments routed to branch `name`: the annotation goes to the SegmentAnnotation field `name`, the
    branch caption to `<name>_caption`, the models to `models`."""

    after = ("route",)
    runs_as = "actor"
    release_heap = True  # a batch of model calls frees hundreds of MiB that glibc would keep

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.config_section = cls.name  # a branch's config section bears its name

    def __init__(self, cfg: JobConfig | dict, num_threads: int = 1):
        super().__init__(cfg, num_threads)
        self._annotator = None
        self._load_error: BaseException | None = None
        # Models load in the background from the actor's start, while the segmenter decodes the first
        # sources: the first segment routed here finds them ready (issue 20: time to first segment).
        self._loading = threading.Thread(target=self._load, name=f"load-{self.name}", daemon=True)
        self._loading.start()

    @classmethod
    def active(cls, cfg: JobConfig) -> bool:
        return getattr(cfg, cls.name).enabled  # `<branch>.enabled: false`: the branch leaves the plan

    def _load(self) -> None:
        try:
            self._annotator = self.build(self.cfg, self.num_threads)
            self.models = self._annotator.models() if self._annotator is not None else {}
        except BaseException as e:  # noqa: BLE001 - raised where the annotator is first needed
            self._load_error = e

    @property
    def annotator(self):
        """The branch's annotator (None: the branch passes its rows through), once its background load is done."""
        self._loading.join()
        if self._load_error is not None:
            raise self._load_error
        return self._annotator

    def build(self, cfg: JobConfig, num_threads: int):
        raise NotImplementedError

    def wants(self, row: Row) -> bool:
        return row.routed_to(self.name) and self.annotator is not None

    def process_batch(self, rows: list[Row]) -> list[Row]:
        items = [BranchInput(r.samples, r.segment.sample_rate, r.segment, r.segment_evidence) for r in rows]
        for r, res in zip(rows, self.annotator.annotate(items), strict=True):
            seg = r.segment
            setattr(seg, self.name, res)
            setattr(seg, f"{self.name}_caption", res.caption or None)
            reroute_after(self.name, seg)
            seg.models.update(self.models)
        return rows


class SpeechStage(BranchStage):
    name = "speech"

    def build(self, cfg: JobConfig, num_threads: int):
        from annotators.speech import build_speech_annotator

        return build_speech_annotator(cfg.speech, num_threads)


class MusicStage(BranchStage):
    name = "music"
    after = ("route", "speech")  # lyrics come from the speech branch's transcript

    def build(self, cfg: JobConfig, num_threads: int):
        from annotators.music import build_music_annotator

        return build_music_annotator(cfg.music, num_threads)


class GeneralAudioStage(BranchStage):
    name = "general"

    def build(self, cfg: JobConfig, num_threads: int):
        from annotators.general import build_general_audio_annotator

        return build_general_audio_annotator(cfg.general, num_threads)


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
