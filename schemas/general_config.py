"""Configuration of the general-audio (sound event) branch (owned by annotators/general)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.resources import ActorResources


class GeneralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # one segment per call: the annotator takes segments one at a time (no batched model call to fill), and Ray
    # Data holds a stage's rows until it has a whole batch, so a batch of 8 held the first segment until 7
    # more had passed the stage before (issue 20: time to first segment)
    resources: ActorResources = Field(default_factory=lambda: ActorResources(batch_size=1))

    # frame posteriors -> events (YAMNet: 0.96 s windows every 0.48 s)
    smooth_frames: int = Field(3, ge=1, description="width of the triangular smoothing of each class's posteriors")
    on_threshold: float = Field(
        0.4, gt=0, lt=1,
        description="a class's raw posterior must reach this to start an event (the w8a8 model's scores come in "
                    "steps 0.18, 0.32, 0.5, 0.68...: 0.32 fires on plain background noise; 0.4 sits between steps, "
                    "so float rounding never moves a score across it)",
    )
    off_threshold: float = Field(0.15, gt=0, lt=1, description="an event lasts while its class stays above this")
    min_event_s: float = Field(0.1, ge=0, description="shorter events are dropped")
    merge_gap_s: float = Field(0.25, ge=0, description="same-class events closer than this are merged")
    include_speech: bool = Field(False, description="also report speech classes as events (the speech branch has them)")
    include_music: bool = Field(False, description="also report music classes as events (the music branch has them)")
    max_events: int = Field(30, ge=1, description="the highest-scoring events kept per segment")

    # onset/offset refinement from the energy envelope of the event's own frequency bands
    refine: bool = Field(True, description="refine event times to ~10 ms from the band energy envelope")
    refine_level: float = Field(
        0.3, gt=0, lt=1, description="threshold between background (0) and event level (1), in dB, for the edges"
    )
    min_band_snr_db: float = Field(6.0, ge=0, description="bands this far over the background carry the event")
    split_gap_s: float = Field(0.4, gt=0, description="an event splits where its band energy stays low this long")
    split_depth_db: float = Field(
        12.0, gt=0, description="or where it drops this far under the edge threshold for 50 ms: the sound stopped "
                                "(repeated hits stay separate events)")

    # a clip-level view: what the segment as a whole sounds like
    max_tags: int = Field(5, ge=0, description="top classes of the segment (mean pooling) listed in `tags`")
    clip_event_max_s: float = Field(
        2.0, gt=0, description="a segment whose sound lasts at most this is one sound: with no event found, its "
                               "confident top class becomes one event over the sound's extent")
    clip_event_min_score: float = Field(
        0.15, gt=0, lt=1, description="the mean posterior the top class of such a short sound needs")

    # scene
    scene_threshold: float = Field(0.08, ge=0, le=1, description="mean posterior a scene tag needs")
    max_scene_tags: int = Field(3, ge=0)


    @model_validator(mode="after")
    def _thresholds(self) -> GeneralConfig:
        if self.off_threshold > self.on_threshold:
            raise ValueError(
                f"off_threshold ({self.off_threshold}) must not exceed on_threshold ({self.on_threshold})"
            )
        return self
