"""The training loop: AdamW with warmup + cosine, gradient accumulation, bf16 autocast on GPU, gradient
clipping, stage-wise freezing, periodic eval, checkpoint save/resume, DDP or FSDP under torchrun / Ray Train.

    train(run_cfg, data=[...], output=RUN_DIR)

Checkpoints: RUN_DIR/checkpoints/step-NNNNNNNN/{model.pt, optimizer.pt, state.json}, and
RUN_DIR/checkpoints/latest naming the newest. state.json holds the step (the learning-rate schedule is a
pure function of it) and the data position (micro-batches consumed per rank). A run started on a RUN_DIR
with a checkpoint resumes from it; on the CPU the resumed steps are bit-identical to an uninterrupted run.

Logging: one JSON line per logged step on stdout ({"step", "loss", "lr", "tokens_per_s", ...}; "mfu" on
GPU), eval lines ({"step", "eval_loss"}), and the same scalars as TensorBoard events in RUN_DIR/tb.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from trainer.configs import RunConfig, Stage, TrainConfig
from trainer.data import ShardStream, expand_data, load_caption_table, make_loader
from trainer.model.lora import is_lora_param
from trainer.model.model import AudioLM
from trainer.tokenizer import AUDIO, load_tokenizer

# dense bf16 peak FLOP/s, for MFU
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


# ----------------------------------------------------------------------------- setup
def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Joins the process group torchrun or Ray Train describes, if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def build_model(cfg: RunConfig, device: torch.device | str = "cpu"):
    """(model, tokenizer). Full configs load their tokenizer from the decoder's directory."""
    tok_path = cfg.model.tokenizer or cfg.model.decoder.pretrained_path
    if not tok_path:
        raise ValueError(f"config {cfg.name!r} needs a decoder directory (--decoder-path) for its tokenizer")
    tok = load_tokenizer(tok_path)
    if tok.vocab_size > cfg.model.decoder.vocab_size:
        cfg.model.decoder.vocab_size = tok.vocab_size
    model = AudioLM(cfg.model, audio_token_id=tok.special[AUDIO])
    if model.decoder.lm.get_input_embeddings().num_embeddings < tok.vocab_size:  # tokens added to a checkpoint
        model.decoder.lm.resize_token_embeddings(tok.vocab_size)
    return model.to(device), tok


def set_stage(model: AudioLM, stage: Stage) -> None:
    """Train the stage's parts, freeze the rest. With LoRA on the decoder, training "decoder" trains its
    LoRA matrices only: the decoder's own weights stay frozen."""
    for name, part in model.parts().items():
        part.requires_grad_(name in stage.train)
    if model.cfg.lora.rank > 0:
        for name, p in model.decoder.named_parameters():
            p.requires_grad_("decoder" in stage.train and is_lora_param(name))


def make_optimizer(model: AudioLM, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW over every parameter (frozen ones get no gradient, so no update); no decay on biases/norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine to cfg.min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def wrap(model: AudioLM, cfg: TrainConfig, device: torch.device):
    """The module the loop calls: the model itself, DDP over it, or the model sharded by FSDP2."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    if cfg.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if (cfg.bf16 and device.type == "cuda") else MixedPrecisionPolicy()
        for layer in list(model.encoder.layers) + list(model.decoder.layers):
            fully_shard(layer, mp_policy=mp)
        return fully_shard(model, mp_policy=mp)
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(module) -> AudioLM:
    return module.module if isinstance(module, DDP) else module


# ----------------------------------------------------------------------------- checkpoints
def _full_states(module, opt, fsdp: bool):
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(module, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unwrap(module).state_dict(), opt.state_dict()


def save_checkpoint(run_dir: Path, step: int, module, opt, data_batches: int, fsdp: bool, rank: int) -> Path:
    model_sd, opt_sd = _full_states(module, opt, fsdp)  # collective under FSDP: every rank calls it
    ckpt = run_dir / "checkpoints" / f"step-{step:08d}"
    if rank == 0:
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save(model_sd, tmp / "model.pt")
        torch.save(opt_sd, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "data_batches": data_batches}))
        if ckpt.exists():
            import shutil

            shutil.rmtree(ckpt)
        tmp.rename(ckpt)
        (run_dir / "checkpoints" / "latest").write_text(ckpt.name)
    if dist.is_initialized():
        dist.barrier()
    return ckpt


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    return run_dir / "checkpoints" / pointer.read_text().strip() if pointer.exists() else None


def load_checkpoint(ckpt: Path, module, opt, fsdp: bool) -> dict:
    model_sd = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
    opt_sd = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(module, opt, model_state_dict=model_sd, optim_state_dict=opt_sd,
                       options=StateDictOptions(full_state_dict=True))
    else:
        unwrap(module).load_state_dict(model_sd)
        opt.load_state_dict(opt_sd)
    return json.loads((ckpt / "state.json").read_text())


def state_digest(model: AudioLM) -> str:
    """sha256 of every parameter's bytes, in name order (to compare weights across ranks or runs)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- steps
def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("input_ids", "position_ids", "wav", "wav_lengths", "labels")}


@torch.no_grad()
def evaluate(module, stream: ShardStream, n_batches: int, device, autocast) -> float:
    module.eval()
    total, count = torch.zeros(2, dtype=torch.float64, device=device), 0
    for batch in stream:
        with autocast():
            loss_sum, n = module(**model_inputs(to_device(batch, device)))
        total += torch.tensor([loss_sum.item(), n], dtype=torch.float64, device=device)
        count += 1
        if count >= n_batches:
            break
    if dist.is_initialized():
        dist.all_reduce(total)
    module.train()
    return (total[0] / total[1].clamp(min=1)).item()


def flops_per_token(model: AudioLM) -> float:
    """6 N for forward + backward (N: parameters outside the embedding table); attention FLOPs ignored."""
    n = sum(p.numel() for p in model.parameters()) - model.decoder.lm.get_input_embeddings().weight.numel()
    return 6.0 * n


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


# ----------------------------------------------------------------------------- the loop
def init_weights(model: AudioLM, path: str | Path) -> None:
    """Start from another checkpoint's weights: a released MOSS-Audio directory, or a run / checkpoint dir
    of ours. LoRA matrices absent from it keep their fresh initialisation."""
    from trainer.moss_audio import load_released_weights
    from trainer.runs import is_moss_audio_dir, resolve_checkpoint

    if is_moss_audio_dir(path):
        load_released_weights(model, path)
        return
    _, ckpt = resolve_checkpoint(path)
    state = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not is_lora_param(m)]
    if missing or unexpected:
        raise ValueError(f"--init-from {path} does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


class TaskEval:
    """Generation + task metrics (trainer/evaluate.py) on a few held-out SFT samples, read once; rank 0 only."""

    def __init__(self, eval_data: list[str], tasks: list[str], per_task: int):
        from trainer.evaluate import read_sft_samples

        self.samples, self.skipped = read_sft_samples(eval_data, tasks or None, per_task)

    def __call__(self, model: AudioLM, tok, device, autocast) -> dict:
        from trainer.evaluate import evaluate_samples
        from trainer.generate import Generator

        model.eval()
        with autocast():
            scores, _ = evaluate_samples(Generator(model, tok, device), self.samples, max_new_tokens=128)
        model.train()
        return scores


def train(cfg: RunConfig, data: list[str], output: str | Path, eval_data: list[str] | None = None,
          record_keys: bool = False, emit=None, init_from: str | Path | None = None,
          eval_tasks: list[str] | None = None, eval_samples: int = 16) -> dict:
    """Train `cfg` on the shards in `data` into `output`; resumes from output's latest checkpoint.
    Returns a summary (final step, last loss, tokens/s, weights digest). `record_keys` (debugging) writes
    the "epoch:key" of every sample this rank trained on, and its weights digest, to RUN_DIR/debug/."""
    tc = cfg.train
    rank, world, device = setup_distributed()
    emit = emit or (lambda rec: print(json.dumps(rec), flush=True))
    log = emit if rank == 0 else (lambda rec: None)
    run_dir = Path(output)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)

    model, tok = build_model(cfg, device)
    if init_from and latest_checkpoint(run_dir) is None:  # a resumed run continues from its own checkpoint
        init_weights(model, init_from)
        log({"init_from": str(init_from)})
    if rank == 0:
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
        tok.save(run_dir)
    fsdp = tc.fsdp and world > 1
    use_bf16 = tc.bf16 and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext
    step, data_batches = 0, 0
    stage = tc.stage_at(0)
    set_stage(model, stage)
    module = wrap(model, tc, device)
    opt = make_optimizer(model, tc, fused=device.type == "cuda")  # after wrap: FSDP replaces the parameters
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        state = load_checkpoint(ckpt, module, opt, fsdp)
        step, data_batches = state["step"], state["data_batches"]
        log({"resumed_from": str(ckpt), "step": step})
    if tc.stage_at(step) != stage:
        stage = tc.stage_at(step)
        set_stage(model, stage)
        module = module if fsdp else wrap(model, tc, device)

    shards = expand_data(data)
    captions = load_caption_table(shards + expand_data(eval_data or []), tc.captions) if tc.captions else None
    stream = ShardStream(shards, tok, task_weights=tc.task_weights, marker_interval_s=cfg.model.marker_interval_s,
                         tokens_per_batch=tc.tokens_per_batch, max_seq_len=tc.max_seq_len, rank=rank,
                         world_size=world, seed=tc.seed, shuffle_buffer=tc.shuffle_buffer, skip=data_batches,
                         captions=captions)
    batches = iter(make_loader(stream, tc.num_workers))
    eval_stream = None
    if eval_data:
        eval_stream = ShardStream(expand_data(eval_data), tok, task_weights=tc.task_weights,
                                  marker_interval_s=cfg.model.marker_interval_s,
                                  tokens_per_batch=tc.tokens_per_batch, max_seq_len=tc.max_seq_len, rank=rank,
                                  world_size=world, seed=tc.seed, infinite=False, captions=captions)
    task_eval = None
    if eval_data and eval_tasks and rank == 0 and not fsdp:
        task_eval = TaskEval(eval_data, eval_tasks, eval_samples)
    tb = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run_dir / "tb"))
    keys_seen: list[str] = []
    fpt, peak = flops_per_token(model), peak_flops(device)
    window_tokens, window_t0, last_loss, tokens_per_s = 0, time.perf_counter(), float("nan"), 0.0

    module.train()
    while step < tc.max_steps:
        if tc.stage_at(step) != stage:  # a new stage: change what trains, re-wrap DDP around it
            stage = tc.stage_at(step)
            set_stage(model, stage)
            module = module if fsdp else wrap(model, tc, device)
            log({"step": step, "stage": stage.name, "train": list(stage.train)})
        lr = lr_at(step, tc)
        for group in opt.param_groups:
            group["lr"] = lr

        micro = [to_device(next(batches), device) for _ in range(tc.grad_accum)]
        data_batches += tc.grad_accum
        n_target = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        step_loss = 0.0
        for i, batch in enumerate(micro):
            sync = i == len(micro) - 1 or not isinstance(module, DDP)
            with (nullcontext() if sync else module.no_sync()), autocast():
                loss_sum, _ = module(**model_inputs(batch))
                loss = loss_sum / max(1, n_target)  # mean over the step's target tokens on this rank
            loss.backward()
            step_loss += loss.item()
            if record_keys:
                keys_seen += [f"{ep}:{k}" for ep, k in zip(batch["epochs"], batch["keys"], strict=True)]
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1

        stats = torch.tensor([step_loss, sum(b["n_tokens"] for b in micro)], dtype=torch.float64)
        if world > 1:
            stats = stats.to(device)
            dist.all_reduce(stats)
            stats = stats.cpu()
        last_loss = stats[0].item() / world
        window_tokens += int(stats[1].item())
        if step % tc.log_interval == 0 or step == tc.max_steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - window_t0
            tokens_per_s = window_tokens / dt
            rec = {"step": step, "loss": round(last_loss, 5), "lr": lr, "tokens_per_s": round(tokens_per_s, 1),
                   "stage": stage.name}
            if peak:
                rec["mfu"] = round(tokens_per_s * fpt / (peak * world), 4)
            log(rec)
            if tb:
                tb.add_scalar("train/loss", last_loss, step)
                tb.add_scalar("train/lr", lr, step)
                tb.add_scalar("train/tokens_per_s", tokens_per_s, step)
            window_tokens, window_t0 = 0, time.perf_counter()
        if eval_stream is not None and tc.eval_interval and (step % tc.eval_interval == 0 or step == tc.max_steps):
            eval_loss = evaluate(module, eval_stream, tc.eval_batches, device, autocast)
            rec = {"step": step, "eval_loss": round(eval_loss, 5)}
            if task_eval is not None and task_eval.samples:
                rec["eval_tasks"] = task_eval(model, tok, device, autocast)
            log(rec)
            if tb:
                tb.add_scalar("eval/loss", eval_loss, step)
                for task, scores in rec.get("eval_tasks", {}).items():
                    for name, v in scores.items():
                        if isinstance(v, (int, float)) and name != "n":
                            tb.add_scalar(f"eval/{task}/{name}", v, step)
        if step % tc.ckpt_interval == 0 or step == tc.max_steps:
            save_checkpoint(run_dir, step, module, opt, data_batches, fsdp, rank)

    digest = state_digest(model) if not fsdp else None
    if record_keys:
        debug = run_dir / "debug"
        debug.mkdir(exist_ok=True)
        (debug / f"rank{rank}.json").write_text(json.dumps({"keys": keys_seen, "digest": digest}))
    if tb:
        tb.close()
    if stream.counters and rank == 0:
        print(json.dumps({"data_counters": dict(stream.counters)}), file=sys.stderr)
    if dist.is_initialized():
        dist.barrier()
    return {"step": step, "loss": last_loss, "tokens_per_s": tokens_per_s, "digest": digest}
