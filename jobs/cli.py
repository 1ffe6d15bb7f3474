"""The `eventcap` command line: annotate, recaption (and train, when the trainer is installed)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _annotate(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"eventcap: {e}", file=sys.stderr)
        return 2
    from pipeline.run import run_annotate

    result = run_annotate(args.inputs, args.output, cfg, progress=args.progress)
    rep = result.report
    out = result.output
    print(f"annotated {rep['segments']['written']} segments ({rep['segments']['audio_s']:.1f} s of audio) "
          f"from {rep['sources']['processed']} sources in {rep['job']['wall_s']:.1f} s "
          f"({rep['throughput']['audio_s_per_wall_s']} audio-s per s)")
    if rep["segments"]["skipped_already_committed"]:
        print(f"resumed: {rep['segments']['skipped_already_committed']} segments were already committed")
    print(f"shards:     {out}/shards ({rep['shards']['total_committed']} committed)")
    print(f"manifest:   {out}/manifest")
    print(f"quarantined {rep['quarantined']['count']} (see {out}/quarantine): "
          f"{json.dumps(rep['quarantined']['by_error'])}")
    print(f"report:     {out}/report.json")
    return 0


def _recaption(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"eventcap: {e}", file=sys.stderr)
        return 2
    from pipeline.recaption import run_recaption

    try:
        rep = run_recaption(args.output, args.name, cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"eventcap recaption: {e}", file=sys.stderr)
        return 2
    print(f"captioned {rep['segments_captioned_now']} segments in {rep['wall_s']:.1f} s "
          f"({rep['shards']['skipped_already_done']} shards already done): {json.dumps(rep['captions']['by_source'])}")
    if rep["captions"]["fallbacks_by_reason"]:
        print(f"template fallbacks by reason: {json.dumps(rep['captions']['fallbacks_by_reason'])}")
    print(f"table:      {rep['table']}/*.parquet (use with: eventcap train --captions {args.name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eventcap", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("annotate", help="segment, route, annotate and shard a corpus")
    a.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories, or .txt/.lst files of URIs")
    a.add_argument("--output", "-o", required=True, help="output directory (or URI)")
    a.add_argument("--config", "-c", help="job config YAML")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set segmenter.max_segment_s=20 (repeatable)")
    a.add_argument("--progress", action="store_true", help="show Ray Data progress bars")
    a.set_defaults(func=_annotate)

    r = sub.add_parser("recaption", help="run only the caption merger over an annotate output into a named table")
    r.add_argument("output", metavar="OUT", help="an annotate output directory (or URI)")
    r.add_argument("--name", required=True, help="the caption table: OUT/captions/NAME/*.parquet")
    r.add_argument("--config", "-c", help="job config YAML (its caption section is used)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set caption.model=qwen3-8b (repeatable)")
    r.set_defaults(func=_recaption)

    try:
        from trainer.cli import add_train_arguments, run_train
    except ImportError:
        pass
    else:
        t = sub.add_parser("train", help="train the audio-language model from shards")
        add_train_arguments(t)
        t.set_defaults(func=run_train)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
