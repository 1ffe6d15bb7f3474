"""Configuration of the general-audio (sound event) branch (owned by annotators/general)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.resources import ActorResources


class GeneralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    resources: ActorResources = Field(default_factory=ActorResources)
