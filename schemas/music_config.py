"""Configuration of the music branch (owned by annotators/music)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.resources import ActorResources


class MusicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    resources: ActorResources = Field(default_factory=ActorResources)
