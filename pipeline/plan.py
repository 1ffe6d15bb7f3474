"""The annotate job's plan: the only place that knows the order of the stages.

Adding a stage: a RowStage subclass (`stages/base.py`) and one line in PLAN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ray

from pipeline.resources import TASK_CPUS, place_all
from schemas.config import JobConfig
from stages.base import RowStage, check_order
from stages.branches import GeneralAudioStage, MusicStage, SpeechStage
from stages.caption import CaptionMerger
from stages.probe import ContentRegistry, ProbeSources
from stages.router import Router
from stages.segment import EventSegmenter


@dataclass
class Step:
    stage: type[RowStage]
    kwargs: dict = field(default_factory=dict)  # constructor arguments beyond (cfg, num_threads)


def steps(output: str | None, registry=None) -> list[Step]:
    """Sources -> probed sources -> segments -> routes -> branch annotations -> unified caption."""
    return [
        Step(ProbeSources, {"registry": registry or ContentRegistry.remote()}),  # same bytes twice: annotated once
        Step(EventSegmenter, {"output": output}),  # replays committed cut lists; drops keys the source row carries
        Step(Router),
        Step(SpeechStage),
        Step(MusicStage),  # reads the transcript (lyrics): declared in MusicStage.after
        Step(GeneralAudioStage),
        Step(CaptionMerger, {"output": output}),  # `output` holds the LLM reply cache
    ]


def build_plan(cfg: JobConfig, sources: ray.data.Dataset, tasks: ray.data.TaskPoolStrategy,
               output: str | None = None, registry=None) -> ray.data.Dataset:
    """The Ray Dataset of the whole plan over `sources` (source_ref rows, read from the spooled listing:
    pipeline/run.py); `tasks` bounds each light task stage as it bounds the job's read and write
    (pipeline/resources.task_pool_size); `registry` is the job's ContentRegistry. Every row keeps the layout of
    `stages/rows.py`; quarantine rows ride along untouched to the writer."""
    plan = steps(output, registry)
    check_order([s.stage for s in plan])  # the order as written, then without the stages the config turns off
    plan = [s for s in plan if s.stage.active(cfg)]
    cluster = ray.cluster_resources()
    actors = [s.stage for s in plan if s.stage.runs_as == "actor"]
    placed = place_all([(a.name, getattr(cfg, a.config_section).resources) for a in actors], cluster)  # by cost
    conf = cfg.model_dump(mode="json")

    ds = sources
    for s in plan:
        if s.stage.runs_as == "actor":
            pl = placed[s.stage.name]
            custom = getattr(cfg, s.stage.config_section).resources.resources  # custom Ray resources: which nodes
            ds = ds.map_batches(s.stage, fn_constructor_kwargs={"cfg": conf, "num_threads": pl.num_threads, **s.kwargs},
                                compute=ray.data.ActorPoolStrategy(min_size=pl.min_size, max_size=pl.pool_size),
                                num_cpus=pl.num_cpus, num_gpus=pl.num_gpus, batch_size=pl.batch_size,
                                batch_format="numpy", **({"resources": custom} if custom else {}))
        else:
            ds = ds.map_batches(s.stage(cfg, **s.kwargs), num_cpus=TASK_CPUS, batch_size=s.stage.task_batch_rows(cfg),
                                batch_format="numpy", compute=tasks)
    return ds
