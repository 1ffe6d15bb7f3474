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
    p.add_argument("--encoder-window", type=int,
                   help="encoder attention window in frames (0: full attention; default: the config's)")
    p.add_argument("--lora-rank", type=int, help="LoRA rank on the decoder (its own weights then stay frozen)")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (scale = alpha / rank)")
    p.add_argument("--init-from", help="a checkpoint to start from: a released MOSS-Audio directory "
                   "(config.json with model_type moss_audio) or a run / checkpoint directory of ours")
    p.add_argument("--eval-tasks", help="comma-separated tasks to score on --eval-data at each eval_interval "
                   "(generation + task metrics next to eval_loss); default: none")
    p.add_argument("--eval-samples", type=int, default=16, help="held-out samples scored per task eval")
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
    if getattr(args, "encoder_window", None) is not None:
        m.encoder.attention_window = args.encoder_window or None
    if getattr(args, "lora_rank", None) is not None:
        m.lora.rank = args.lora_rank
    if getattr(args, "lora_alpha", None) is not None:
        m.lora.alpha = args.lora_alpha
    if getattr(args, "init_from", None):
        cfg.model = init_model_config(args.init_from, m)
        m = cfg.model
    if args.decoder_path:
        m.decoder.pretrained_path = args.decoder_path
    if args.whisper_path:
        m.encoder.whisper_path = args.whisper_path
    return cfg


def init_model_config(path: str, current):
    """The model config of an --init-from checkpoint (its sizes win), keeping this run's LoRA, DeepStack
    switch and marker interval when the command line set them."""
    from pathlib import Path

    from trainer.runs import is_moss_audio_dir, resolve_checkpoint, run_model_config

    if is_moss_audio_dir(path):
        import json

        from trainer.moss_audio import model_config_from_released

        new = model_config_from_released(json.loads((Path(path) / "config.json").read_text()))
        new.tokenizer = "bytes" if (Path(path) / "tokenizer.txt").is_file() else str(path)
    else:
        run_dir, _ = resolve_checkpoint(path)
        new = run_model_config(run_dir)
        if new.tokenizer != "bytes":
            new.tokenizer = str(run_dir)
    new.lora = current.lora
    return new


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

    eval_tasks = [t for t in (args.eval_tasks or "").split(",") if t]
    train(cfg, args.data, args.output, eval_data=args.eval_data or None, record_keys=args.record_keys,
          init_from=args.init_from, eval_tasks=eval_tasks, eval_samples=args.eval_samples)
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


# ----------------------------------------------------------------------------- generate / evaluate / export
def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run dir, checkpoint dir, or a MOSS-Audio layout dir")
    p.add_argument("--audio", action="append", required=True, help="audio file; repeat to batch several")
    p.add_argument("--prompt", default="Describe the audio.", help="the question (the same for every file)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present, in bf16)")


def run_generate(args: argparse.Namespace) -> int:
    from trainer.generate import Generator

    gen = Generator.from_checkpoint(args.checkpoint, device=args.device)
    outs = gen.generate(args.audio, args.prompt, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    for path, g in zip(args.audio, outs, strict=True):
        rec = {"audio": path, "answer": g.answer, "stopped": g.stopped, "new_tokens": len(g.token_ids)}
        if g.thinking is not None:
            rec["thinking"] = g.thinking
        print(json.dumps(rec, ensure_ascii=False), flush=True)
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from trainer.evaluate import TASKS

    p.add_argument("--checkpoint", required=True, help="run dir, checkpoint dir, or a MOSS-Audio layout dir")
    p.add_argument("--data", action="append", required=True, help="held-out SFT shards (dir, pattern or file)")
    p.add_argument("--tasks", help=f"comma-separated subset of {','.join(TASKS)} (default: every task found)")
    p.add_argument("--limit", type=int, help="at most this many samples per task")
    p.add_argument("--output", help="where evaluate.json / evaluate.md go (default: the checkpoint dir)")
    p.add_argument("--audio-root", action="append", default=[], help="dirs holding the shards audio_ref points at")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device")


def run_evaluate_cli(args: argparse.Namespace) -> int:
    from trainer.evaluate import format_table, run_evaluate

    tasks = [t for t in (args.tasks or "").split(",") if t] or None
    try:
        report = run_evaluate(args.checkpoint, args.data, tasks, args.output, args.limit, args.max_new_tokens,
                              args.batch_size, args.audio_root, args.device)
    except ValueError as e:
        print(f"eventcap evaluate: {e}", file=sys.stderr)
        return 2
    print(format_table(report["tasks"]))
    if report["skipped"]:
        print(f"skipped: {json.dumps(report['skipped'])}")
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run dir or checkpoint dir")
    p.add_argument("out_dir", help="directory to write")
    p.add_argument("--format", default="moss-audio", choices=["moss-audio"], help="checkpoint layout")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="cast weights (default: as trained)")


def run_export(args: argparse.Namespace) -> int:
    from trainer.moss_audio import export_moss_audio
    from trainer.runs import load_model

    model, tok, _ = load_model(args.run)
    out = export_moss_audio(model, tok, args.out_dir, getattr(torch, args.dtype) if args.dtype else None)
    print(f"exported {args.run} -> {out} (moss-audio layout)")
    return 0
