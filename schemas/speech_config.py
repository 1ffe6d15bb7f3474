"""Configuration of the speech branch (owned by annotators/speech)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.resources import ActorResources


class SpeechConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    resources: ActorResources = Field(default_factory=ActorResources)
