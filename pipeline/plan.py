"""The annotate job's plan: the only place that knows the order of the stages."""

from __future__ import annotations

import ray

from pipeline.resources import TASK_CPUS, place
from schemas.config import JobConfig
from stages.branches import MusicAnnotator, SoundEventAnnotator, SpeechAnnotator
from stages.caption import CaptionMerger
from stages.probe import ContentRegistry, ProbeSources
from stages.router import Router
from stages.segment import EventSegmenter


def build_plan(cfg: JobConfig, sources: ray.data.Dataset, output: str | None = None,
               registry=None) -> ray.data.Dataset:
    """Sources -> probed sources -> segments -> routes -> branch annotations -> unified caption.

    `sources` holds source_ref rows (read from the spooled listing: pipeline/run.py); `registry` is the job's
    ContentRegistry. Every row keeps the layout of `stages/rows.py`; quarantine rows ride along untouched.
    """
    cluster = ray.cluster_resources()
    actor_stages = [("segment", cfg.segmenter.resources), ("speech", cfg.speech.resources),
                    ("music", cfg.music.resources), ("general", cfg.general.resources)]
    p = {name: place(res, name, len(actor_stages), cluster) for name, res in actor_stages}
    custom = {name: res.resources for name, res in actor_stages}  # custom Ray resources: which nodes
    conf = cfg.model_dump(mode="json")

    def actor(stage_cls, name, **kwargs):
        pl = p[name]
        return dict(fn=stage_cls, fn_constructor_kwargs={"cfg": conf, "num_threads": pl.num_threads, **kwargs},
                    compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pl.pool_size),
                    num_cpus=pl.num_cpus, num_gpus=pl.num_gpus, batch_size=pl.batch_size, batch_format="numpy",
                    **({"resources": custom[name]} if custom[name] else {}))

    def task(fn):
        return dict(fn=fn, num_cpus=TASK_CPUS, batch_size=16, batch_format="numpy")

    registry = registry or ContentRegistry.remote()
    ds = sources.map_batches(**task(ProbeSources(cfg, registry)))  # same bytes twice: annotated once
    ds = ds.map_batches(**actor(EventSegmenter, "segment"))  # skips the committed keys each source_ref carries
    ds = ds.map_batches(**task(Router(cfg)))
    ds = ds.map_batches(**actor(SpeechAnnotator, "speech"))
    ds = ds.map_batches(**actor(MusicAnnotator, "music"))  # after speech: lyrics come from the transcript
    ds = ds.map_batches(**actor(SoundEventAnnotator, "general"))
    ds = ds.map_batches(**task(CaptionMerger(cfg, output)))  # `output` holds the LLM reply cache
    return ds
