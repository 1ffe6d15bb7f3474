"""Tokens/s of the tiny trainer config vs a plain `transformers` Qwen3 of the same decoder size, trained
side by side on the same token stream (the same packed batches; for the plain model the audio
placeholders are ordinary tokens and there is no audio encoder, adapter or DeepStack).

    python -m bench.bench_trainer [--config tiny] [--steps 30] [--threads 1]

Each round runs one optimiser step of each model, alternating, so both see the same machine load.
Prints one JSON object: tokens/s of each, and ours / plain as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import Qwen3ForCausalLM  # noqa: E402

from tests.trainer_fixtures import make_annotate_shards  # noqa: E402
from trainer.configs import get_config  # noqa: E402
from trainer.data import ShardStream, expand_data  # noqa: E402
from trainer.sequence import IGNORE  # noqa: E402
from trainer.train import build_model, model_inputs  # noqa: E402


def plain_loss(lm: Qwen3ForCausalLM, batch: dict) -> torch.Tensor:
    h = lm.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    return F.cross_entropy(lm.lm_head(h[:, :-1][keep]).float(), targets[keep], reduction="sum") / keep.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--tokens-per-batch", type=int, default=1024)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = get_config(args.config)
    torch.manual_seed(0)
    ours, tok = build_model(cfg)
    plain = Qwen3ForCausalLM(cfg.model.decoder.to_hf())
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-4)

    with tempfile.TemporaryDirectory() as tmp:
        make_annotate_shards(Path(tmp), n_shards=2, per_shard=8, durations=(1.0, 1.7, 2.6, 4.1))
        stream = ShardStream(expand_data([str(Path(tmp) / "shards")]), tok, task_weights=cfg.train.task_weights,
                             marker_interval_s=cfg.model.marker_interval_s, tokens_per_batch=args.tokens_per_batch,
                             max_seq_len=args.tokens_per_batch, seed=0, shuffle_buffer=4)
        it = iter(stream)
        batches = [next(it) for _ in range(args.steps + args.warmup)]

    def step_ours(b):
        loss_sum, n = ours(**model_inputs(b))
        (loss_sum / n).backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_plain(b):
        plain_loss(plain, b).backward()
        opt_plain.step()
        opt_plain.zero_grad(set_to_none=True)

    seconds = {"ours": 0.0, "plain": 0.0}
    tokens = 0
    for i, b in enumerate(batches):
        for name, fn in (("ours", step_ours), ("plain", step_plain)):
            t = time.perf_counter()
            fn(b)
            if i >= args.warmup:
                seconds[name] += time.perf_counter() - t
        if i >= args.warmup:
            tokens += b["n_tokens"]
    audio_id = tok.special["<|AUDIO|>"]
    audio_share = sum(int((b["input_ids"] == audio_id).sum()) for b in batches) / sum(b["n_tokens"] for b in batches)
    result = {
        "config": cfg.name, "device": "cpu", "threads": torch.get_num_threads(), "steps": args.steps,
        "tokens_per_step": round(tokens / args.steps, 1), "audio_token_share": round(audio_share, 3),
        "ours_tokens_per_s": round(tokens / seconds["ours"], 1),
        "plain_qwen3_tokens_per_s": round(tokens / seconds["plain"], 1),
        "ratio_ours_over_plain": round(seconds["plain"] / seconds["ours"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
