"""The `eventcap` command line: annotate, report, submit/status/logs/stop (and train, when the trainer is installed)."""

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
    print(f"report:     {out}/report.html ({out}/report.json); dataset card: {out}/README.md")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.dataset_card import write_dataset_card
    from pipeline.report import write_report

    print(write_report(args.output))
    print(write_dataset_card(args.output))
    return 0


LIGHT_COMMANDS = ("submit", "status", "logs", "stop", "report")  # start fast: no trainer (torch) import


def build_parser(with_trainer: bool = True) -> argparse.ArgumentParser:
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

    r = sub.add_parser("report", help="write OUT/report.html (charts, one offline file) and the dataset card OUT/README.md")
    r.add_argument("output", metavar="OUT", help="an annotate output directory (or URI)")
    r.set_defaults(func=_report)

    from jobs.remote import add_remote_commands

    add_remote_commands(sub)

    if with_trainer:
        _add_train(sub)
    return p


def _add_train(sub) -> None:
    try:
        from trainer.cli import add_train_arguments, run_train
    except ImportError:
        return
    t = sub.add_parser("train", help="train the audio-language model from shards")
    add_train_arguments(t)
    t.set_defaults(func=run_train)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(with_trainer=not argv or argv[0] not in LIGHT_COMMANDS).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
