"""How a model stage is placed on the cluster (shared by every actor stage's config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ActorResources(BaseModel):
    """Placement of one actor stage. `concurrency=None` sizes the pool from the cluster's resources."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(0.5, ge=0, description="CPUs per actor; fractional leaves room for read tasks")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor; fractional packs small models on one GPU")
    concurrency: int | None = Field(None, ge=1, description="actors in the pool; None = derived from resources")
    batch_size: int = Field(8, ge=1, description="segments per batch handed to the model")
    cost: float | None = Field(None, gt=0, description="core-seconds per audio-second of this stage, weighting its "
                               "share of the CPUs; None = the measured default (pipeline/resources.py)")
    resources: dict[str, float] = Field(default_factory=dict,
                                        description="custom Ray resources per actor, e.g. {worker: 0.5}: "
                                                    "places the stage on the nodes that offer them")
