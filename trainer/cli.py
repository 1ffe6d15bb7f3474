"""`eventcap train`: the flags and the entry point (jobs/cli.py wires them in; `python -m trainer.cli` too).

    eventcap train --config tiny --data SHARD_DIR_OR_PATTERN [--data ...] --output RUN_DIR --max-steps N
    eventcap train --config 8b --count-params
    torchrun --nproc_per_node 8 -m trainer.cli --config 4b --decoder-path /models/Qwen3-4B --data ... --output ...
    eventcap train --config 4b ... --ray-workers 16 --ray-gpu      (Ray Train TorchTrainer on the cluster)
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from trainer.configs import CONFIGS

    p = parser
    p.add_argument("--config", default="tiny", choices=sorted(CONFIGS), help="named model + training config")
    p.add_argument("--data", action="append", default=[], help="shard dir, brace pattern or glob; repeatable")
    p.add_argument("--eval-data", action="append", default=[], help="held-out shards for periodic eval loss")
    p.add_argument("--output", help="run directory: checkpoints, config, TensorBoard events (resumes if present)")
    p.add_argument("--max-steps", type=int, help="optimiser steps (default: the config's)")
    p.add_argument("--count-params", action="store_true", help="print parameter counts as JSON and exit (no weights)")
    p.add_argument("--decoder-path", help="local Qwen3 checkpoint dir: decoder weights and tokenizer")
    p.add_argument("--whisper-path", help="local Hugging Face Whisper checkpoint dir to initialise the encoder")
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--tokens-per-batch", type=int, help="tokens per micro-batch and rank")
    p.add_argument("--max-seq-len", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--log-interval", type=int)
    p.add_argument("--eval-interval", type=int)
    p.add_argument("--ckpt-interval", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--num-workers", type=int, help="DataLoader workers per rank")
    p.add_argument("--task-weights", help='JSON, e.g. \'{"caption": 1, "asr": 0.5, "sft": 1}\'')
    p.add_argument("--marker-interval", type=float, help="seconds between time markers (0: none)")
    p.add_argument("--no-deepstack", action="store_true", help="K = 0: no DeepStack injection (ablation)")
    p.add_argument("--fsdp", action=argparse.BooleanOptionalAction, default=None, help="FSDP instead of DDP")
    p.add_argument("--ray-workers", type=int, default=0, help="run under Ray Train's TorchTrainer with N workers")
    p.add_argument("--ray-gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--ray-address", help="Ray cluster address (default: start or join a local one)")
    p.add_argument("--captions", metavar="NAME",
                   help="train captions from OUT/captions/NAME/*.parquet (eventcap recaption) instead of <key>.txt")
    p.add_argument("--record-keys", action="store_true",
                   help="debug: write each rank's sample keys and final weight digest to RUN_DIR/debug/")


def config_from_args(args: argparse.Namespace):
    from trainer.configs import get_config

    cfg = get_config(args.config)
    t, m = cfg.train, cfg.model
    for flag, attr in [("max_steps", "max_steps"), ("lr", "lr"), ("warmup_steps", "warmup_steps"),
                       ("tokens_per_batch", "tokens_per_batch"), ("max_seq_len", "max_seq_len"),
                       ("grad_accum", "grad_accum"), ("log_interval", "log_interval"),
                       ("eval_interval", "eval_interval"), ("ckpt_interval", "ckpt_interval"), ("seed", "seed"),
                       ("num_workers", "num_workers"), ("fsdp", "fsdp")]:
        if getattr(args, flag, None) is not None:
            setattr(t, attr, getattr(args, flag))
    if args.lr is not None:
        t.min_lr = min(t.min_lr, args.lr)
    if getattr(args, "captions", None):
        t.captions = args.captions
    if args.task_weights:
        t.task_weights = {k: float(v) for k, v in json.loads(args.task_weights).items()}
    if args.marker_interval is not None:
        m.marker_interval_s = args.marker_interval or None
    if args.no_deepstack:
        m.deepstack = False
    if args.decoder_path:
        m.decoder.pretrained_path = args.decoder_path
    if args.whisper_path:
        m.encoder.whisper_path = args.whisper_path
    return cfg


def count_params_json(cfg) -> dict:
    """Parameter counts of a config, built on the meta device: no memory, no weights, no tokenizer."""
    from trainer.model.model import AudioLM, count_params

    cfg.model.decoder.pretrained_path = None  # sizes come from the config; nothing is read
    cfg.model.encoder.whisper_path = None
    with torch.device("meta"):
        model = AudioLM(cfg.model, audio_token_id=0)
    return {"config": cfg.name, **count_params(model)}


def run_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.count_params:
        print(json.dumps(count_params_json(cfg)), flush=True)
        return 0
    if not args.data or not args.output:
        print("eventcap train: --data and --output are required (or --count-params)", file=sys.stderr)
        return 2
    if args.ray_workers:
        from trainer.ray_train import train_with_ray

        train_with_ray(cfg, args.data, args.output, args.eval_data, num_workers=args.ray_workers,
                       use_gpu=args.ray_gpu, address=args.ray_address)
        return 0
    import torch.distributed as dist

    from trainer.train import train

    train(cfg, args.data, args.output, eval_data=args.eval_data or None, record_keys=args.record_keys)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eventcap train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
