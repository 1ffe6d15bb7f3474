"""The annotate job's plan: the only place that knows the order of the stages.

Adding a stage: a RowStage subclass (`stages/base.py`) and one line in PLAN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import ray

from pipeline.resources import TASK_CPUS, place_all
from schemas.config import JobConfig
from stages.base import RowStage, check_order
from stages.branches import GeneralAudioStage, MusicStage, SpeechStage
from stages.caption import CaptionMerger
from stages.probe import ContentRegistry, ProbeSources
from stages.router import Router
from stages.rows import Row, RowKind
from stages.segment import EventSegmenter


@dataclass
class Step:
    stage: type[RowStage]
    kwargs: dict = field(default_factory=dict)  # constructor arguments beyond (cfg, num_threads)


def steps(skip_keys: frozenset[str], output: str | None) -> list[Step]:
    """Sources -> probed sources -> segments -> routes -> branch annotations -> unified caption."""
    return [
        Step(ProbeSources, {"registry": ContentRegistry.remote()}),  # same bytes twice: annotated once
        Step(EventSegmenter, {"skip_keys": skip_keys, "output": output}),  # output: committed cut lists  # committed keys are dropped before any model runs
        Step(Router),
        Step(SpeechStage),
        Step(MusicStage),  # reads the transcript (lyrics): declared in MusicStage.after
        Step(GeneralAudioStage),
        Step(CaptionMerger, {"output": output}),  # `output` holds the LLM reply cache
    ]


def build_plan(cfg: JobConfig, sources: list[dict], skip_keys: frozenset[str],
               output: str | None = None) -> ray.data.Dataset:
    """The Ray Dataset of the whole plan over `sources`. Every row keeps the layout of `stages/rows.py`;
    quarantine rows ride along untouched to the writer."""
    plan = steps(skip_keys, output)
    check_order([s.stage for s in plan])
    cluster = ray.cluster_resources()
    actors = [s.stage for s in plan if s.stage.runs_as == "actor"]
    placed = place_all([(a.name, getattr(cfg, a.config_section).resources) for a in actors], cluster)  # by cost
    conf = cfg.model_dump(mode="json")

    refs = [Row(RowKind.SOURCE_REF, json.dumps(s)).to_dict() for s in sources]
    blocks = cfg.ingest.read_parallelism or max(1, min(len(refs), 1000))
    ds = ray.data.from_items(refs, override_num_blocks=blocks)
    for s in plan:
        if s.stage.runs_as == "actor":
            pl = placed[s.stage.name]
            ds = ds.map_batches(s.stage, fn_constructor_kwargs={"cfg": conf, "num_threads": pl.num_threads, **s.kwargs},
                                compute=ray.data.ActorPoolStrategy(min_size=pl.min_size, max_size=pl.pool_size),
                                num_cpus=pl.num_cpus, num_gpus=pl.num_gpus, batch_size=pl.batch_size,
                                batch_format="numpy")
        else:
            ds = ds.map_batches(s.stage(cfg, **s.kwargs), num_cpus=TASK_CPUS, batch_size=16, batch_format="numpy")
    return ds
