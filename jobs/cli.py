"""The `eventcap` command line: annotate, verify, recaption, sft, report, doctor, submit/status/logs/stop, and (when the
trainer is installed) train, generate, evaluate, export."""

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
    from pipeline.lease import LeaseHeld, OutputLease

    try:
        OutputLease(args.output).check()  # before the heavy imports: a held output is refused at once
        from pipeline.run import run_annotate

        result = run_annotate(args.inputs, args.output, cfg, progress=_progress(args.progress), repair=args.repair)
    except LeaseHeld as e:
        print(f"eventcap: {e}", file=sys.stderr)
        return 3
    except OSError as e:  # the output failing under the job (a full disk, a lost mount), also from a Ray task
        print(_output_failed(e, args.output), file=sys.stderr)
        return 1
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
    if taken := rep.get("lease", {}).get("taken_over"):
        print(f"took over a stale lease on {out}: {taken['reason']} (started {taken['started']})")
    if rep.get("repaired_shards"):
        print(f"repaired:   re-did the keys of {', '.join(rep['repaired_shards'])}")
    return 0


def _output_failed(e: OSError, output: str) -> str:
    """One clear line for an I/O error that stopped the job (the Ray traceback above it names the call)."""
    from pipeline.redact import redact_text

    cause = getattr(e, "cause", None) or e  # a Ray task's error carries the worker's exception
    what = cause.strerror or str(cause)
    where = f" on {cause.filename}" if getattr(cause, "filename", None) else ""
    return redact_text(f"eventcap: annotate stopped: {what} (errno {cause.errno}){where}. The committed shards in "
                       f"{output} are complete and kept; fix the cause and run the same command again to resume.")


def _recaption(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"eventcap: {e}", file=sys.stderr)
        return 2
    from pipeline.recaption import run_recaption
    from pipeline.sources import apply_s3_config

    apply_s3_config(cfg.s3)

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


def _s3_from_config(args: argparse.Namespace) -> bool:
    """Apply the `s3:` section of `--config` (and `--set s3.*`) for a command that only opens an output."""
    from schemas.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"eventcap {args.command}: {e}", file=sys.stderr)
        return False
    from pipeline.sources import apply_s3_config

    apply_s3_config(cfg.s3)
    return True


def _add_s3_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="job config YAML: its s3 section (endpoint, region, credentials) is used "
                                          "for an s3:// OUT; unset values fall back to the AWS environment")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set s3.region=eu-west-1 (repeatable)")


def _verify(args: argparse.Namespace) -> int:
    if not _s3_from_config(args):
        return 2
    from pipeline.verify import OutputVerifier, format_report

    rep = OutputVerifier(args.output).run()
    print(format_report(rep))
    return 0 if rep.ok else 1


def _progress(flag: bool | None) -> bool:
    """Ray Data's progress bars: on when stdout is a terminal, off in CI and logs, unless a flag says."""
    return sys.stdout.isatty() if flag is None else flag


def _doctor(args: argparse.Namespace) -> int:
    from jobs.doctor import run

    return run(args)


def _report(args: argparse.Namespace) -> int:
    if not _s3_from_config(args):
        return 2
    from pipeline.dataset_card import write_dataset_card
    from pipeline.report import write_report

    print(write_report(args.output))
    print(write_dataset_card(args.output))
    return 0


LIGHT_COMMANDS = ("annotate", "sft", "recaption", "submit", "status", "logs", "stop", "report", "doctor", "verify")
# ^ start fast: the trainer (torch) is imported only for train, generate, evaluate, export and --help


def build_parser(with_trainer: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eventcap", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("annotate", help="segment, route, annotate and shard a corpus")
    a.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories, or .txt/.lst files of URIs")
    a.add_argument("--output", "-o", required=True, help="output directory (or URI)")
    a.add_argument("--config", "-c", help="job config YAML")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set segmenter.max_segment_s=20 (repeatable)")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="Ray Data progress bars (default: on when stdout is a terminal)")
    a.add_argument("--repair", action="store_true",
                   help="first uncommit the shards `eventcap verify` finds damaged, so only their keys are redone")
    a.set_defaults(func=_annotate)

    v = sub.add_parser("verify", help="check an output's shards, manifest and quarantine table against the "
                                      "commit markers; exit 1 with the list of problems")
    v.add_argument("output", metavar="OUT")
    _add_s3_config_arguments(v)
    v.set_defaults(func=_verify)

    from jobs.doctor import add_arguments as add_doctor_arguments

    d = sub.add_parser("doctor", help="check the installation: versions, embedded models, tools, GPU, Ray")
    add_doctor_arguments(d)
    d.set_defaults(func=_doctor)

    from jobs.sft import add_sft_arguments, run_sft_command

    s = sub.add_parser("sft", help="regenerate task-oriented SFT data from annotate outputs (no annotator runs)")
    add_sft_arguments(s)
    s.set_defaults(func=run_sft_command)

    rc = sub.add_parser("recaption", help="run only the caption merger over an annotate output into a named table")
    rc.add_argument("output", metavar="OUT", help="an annotate output directory (or URI)")
    rc.add_argument("--name", required=True, help="the caption table: OUT/captions/NAME/*.parquet")
    rc.add_argument("--config", "-c", help="job config YAML (its caption section is used)")
    rc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set caption.model=qwen3-8b (repeatable)")
    rc.set_defaults(func=_recaption)

    r = sub.add_parser("report", help="write OUT/report.html (charts, one offline file) and the dataset card OUT/README.md")
    r.add_argument("output", metavar="OUT", help="an annotate output directory (or URI)")
    _add_s3_config_arguments(r)
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
    from trainer.cli import (
        add_evaluate_arguments,
        add_export_arguments,
        add_generate_arguments,
        run_evaluate_cli,
        run_export,
        run_generate,
    )

    g = sub.add_parser("generate", help="ask a trained model about audio files")
    add_generate_arguments(g)
    g.set_defaults(func=run_generate)
    e = sub.add_parser("evaluate", help="score a trained model on held-out SFT tasks")
    add_evaluate_arguments(e)
    e.set_defaults(func=run_evaluate_cli)
    x = sub.add_parser("export", help="write a trained model in the released MOSS-Audio layout")
    add_export_arguments(x)
    x.set_defaults(func=run_export)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(with_trainer=not argv or argv[0] not in LIGHT_COMMANDS).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
