"""`eventcap sft`: regenerate task-oriented SFT data from annotate outputs (see jobs/sft/run.py)."""

from __future__ import annotations

import argparse
import json
import sys


def add_sft_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="ANNOTATE_OUT", help="output directories (or URIs) of `eventcap annotate`")
    p.add_argument("--output", "-o", required=True, help="SFT output directory (a rerun into it resumes)")
    p.add_argument("--tasks", help="comma-separated tasks to make (the others get weight 0), e.g. caption,asr_ts")
    p.add_argument("--config", "-c", help="sft.yaml: task weights, thresholds, shard size")
    p.add_argument("--format", choices=["webdataset", "moss-jsonl"], help="output format (default: webdataset)")
    p.add_argument("--embed-audio", action="store_true", default=None, help="copy each segment's FLAC into the shards")
    p.add_argument("--seed", type=int, help="seed of every random choice (default: the config's, 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")


def run_sft_command(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError
    from schemas.sft_config import TASK_NAMES, load_sft_config

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.format:
        overrides.append(f"format={args.format}")
    if args.embed_audio:
        overrides.append("embed_audio=true")
    try:
        if args.tasks:
            wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
            bad = [t for t in wanted if t not in TASK_NAMES]
            if bad:
                raise ConfigError(f"--tasks: unknown task {bad[0]!r} (one of {', '.join(TASK_NAMES)})")
            overrides += [f"tasks.{t}.weight=0" for t in TASK_NAMES if t not in wanted]
        cfg = load_sft_config(args.config, overrides)
        if args.tasks:  # a task asked for by name runs even if the config turned it off
            for t in wanted:
                if cfg.tasks[t].weight == 0:
                    cfg.tasks[t].weight = 1.0
    except ConfigError as e:
        print(f"eventcap sft: {e}", file=sys.stderr)
        return 2
    from jobs.sft.run import PlanMismatch, run_sft

    try:
        result = run_sft(args.inputs, args.output, cfg)
    except (PlanMismatch, FileNotFoundError) as e:
        print(f"eventcap sft: {e}", file=sys.stderr)
        return 2
    rep, tm = result.report, result.timing
    print(f"sft: {rep['total_samples']} samples from {rep['segments']['used']} segments "
          f"in {tm['wall_s']:.1f} s ({tm['s_per_1000_samples']} s per 1,000 samples written)")
    if tm["shards_resumed"]:
        print(f"resumed: {tm['shards_resumed']} of {rep['shards']} shards were already committed")
    print("samples:  " + json.dumps(rep["samples"]))
    print("skipped:  " + json.dumps(rep["skipped_by_reason"]))
    where = "train.jsonl + audio/" if rep["format"] == "moss-jsonl" else "shards/"
    print(f"output:   {result.output}/{where}, index/, report.json")
    return 0
