"""Configuration of the music branch (owned by annotators/music)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.resources import ActorResources


class MusicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # one segment per call: the annotator takes segments one at a time (no batched model call to fill), and Ray
    # Data holds a stage's rows until it has a whole batch, so a batch of 8 held the first segment until 7
    # more had passed the stage before (issue 20: time to first segment)
    resources: ActorResources = Field(default_factory=lambda: ActorResources(batch_size=1))

    # tempo and beats
    tempo_prior_bpm: float = Field(120.0, gt=0, description="centre of the tempogram's log-normal tempo prior")
    multi_feature_tempo: bool = Field(
        True, description="tempo proposals from several onset features, metrical level chosen across them")
    min_bpm: float = Field(50.0, gt=0, description="octave correction keeps the tempo at or above this")
    max_bpm: float = Field(200.0, gt=0, description="octave correction keeps the tempo at or below this")
    octave_ratio: float = Field(
        0.5, gt=0, lt=1,
        description="off-beat/beat strength above which the tempo doubles, below which (every other beat) it halves",
    )
    min_tempo_confidence: float = Field(
        0.1, ge=0, le=1, description="under this beat autocorrelation no tempo, beats or meter are reported"
    )
    meter_contrast_db: float = Field(
        3.0, ge=0, description="low-band level of the downbeats over the other beats needed for a time signature"
    )

    # key
    key_profile: Literal["krumhansl", "temperley", "albrecht"] = Field(
        "krumhansl", description="key profiles correlated with the segment's chroma"
    )
    min_tonality: float = Field(
        0.5, ge=0, le=1, description="tonality confidence (share of the 80-2000 Hz energy in spectral peaks) a key "
                                     "needs: drums and noise score under 0.45, pitched music over 0.55")
    min_tonality_clear_key: float = Field(
        0.3, ge=0, le=1, description="a lower tonality suffices when the key profile fits clearly (`clear_key`): "
                                     "piano chords over drums")
    clear_key: float = Field(0.75, ge=-1, le=1, description="key-profile correlation that counts as a clear key")
    min_key_confidence: float = Field(0.3, ge=-1, le=1, description="under this correlation no key is reported")

    # YAMNet music tags (scores are posteriors averaged over the segment's frames)
    tag_threshold: float = Field(0.02, ge=0, le=1, description="music-ontology classes listed in `music_tags`")
    max_tags: int = Field(10, ge=0)
    genre_threshold: float = Field(0.05, ge=0, le=1)
    instrument_threshold: float = Field(0.05, ge=0, le=1)
    vocal_threshold: float = Field(0.1, ge=0, le=1, description="singing score (top-quartile frames) for vocals")
    lyrics_from_speech: bool = Field(True, description="with vocals, the speech branch's transcript is the lyrics")

    # optional note transcription (basic-pitch ONNX), for the melody range
    transcribe_notes: bool = Field(False, description="run basic-pitch for `melody_range_midi` (about 20x real time)")
    note_frame_threshold: float = Field(0.3, gt=0, lt=1)
    note_onset_threshold: float = Field(0.5, gt=0, lt=1)
    min_note_s: float = Field(0.1, gt=0)


    @model_validator(mode="after")
    def _tempo_range(self) -> MusicConfig:
        if self.max_bpm < 2 * self.min_bpm:
            raise ValueError(f"max_bpm ({self.max_bpm}) must be at least twice min_bpm ({self.min_bpm})")
        return self
