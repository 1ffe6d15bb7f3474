"""The annotate job's plan: the only place that knows the order of the stages."""

from __future__ import annotations

import json

import ray

from pipeline.resources import TASK_CPUS, place_all
from schemas.config import JobConfig
from stages.branches import MusicAnnotator, SoundEventAnnotator, SpeechAnnotator
from stages.caption import CaptionMerger
from stages.probe import ContentRegistry, ProbeSources
from stages.router import Router
from stages.rows import row
from stages.segment import EventSegmenter


def build_plan(cfg: JobConfig, sources: list[dict], skip_keys: frozenset[str],
               output: str | None = None) -> ray.data.Dataset:
    """Sources -> probed sources -> segments -> routes -> branch annotations -> unified caption.

    Every row keeps the layout of `stages/rows.py`; quarantine rows ride along untouched to the writer.
    """
    cluster = ray.cluster_resources()
    actor_stages = [("segment", cfg.segmenter.resources), ("speech", cfg.speech.resources),
                    ("music", cfg.music.resources), ("general", cfg.general.resources)]
    p = place_all(actor_stages, cluster)  # shares weighted by each stage's cost: the bottleneck gets the cores
    conf = cfg.model_dump(mode="json")

    def actor(stage_cls, name, **kwargs):
        pl = p[name]
        return dict(fn=stage_cls, fn_constructor_kwargs={"cfg": conf, "num_threads": pl.num_threads, **kwargs},
                    compute=ray.data.ActorPoolStrategy(min_size=pl.min_size, max_size=pl.pool_size),
                    num_cpus=pl.num_cpus, num_gpus=pl.num_gpus, batch_size=pl.batch_size, batch_format="numpy")

    def task(fn):
        return dict(fn=fn, num_cpus=TASK_CPUS, batch_size=16, batch_format="numpy")

    refs = [row("source_ref", json.dumps(s)) for s in sources]
    blocks = cfg.ingest.read_parallelism or max(1, min(len(refs), 1000))
    ds = ray.data.from_items(refs, override_num_blocks=blocks)
    ds = ds.map_batches(**task(ProbeSources(cfg, ContentRegistry.remote())))  # same bytes twice: annotated once
    ds = ds.map_batches(**actor(EventSegmenter, "segment", skip_keys=skip_keys))
    ds = ds.map_batches(**task(Router(cfg)))
    ds = ds.map_batches(**actor(SpeechAnnotator, "speech"))
    ds = ds.map_batches(**actor(MusicAnnotator, "music"))  # after speech: lyrics come from the transcript
    ds = ds.map_batches(**actor(SoundEventAnnotator, "general"))
    ds = ds.map_batches(**task(CaptionMerger(cfg, output)))  # `output` holds the LLM reply cache
    return ds
