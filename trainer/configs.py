"""Run configs: the model sizes, the training hyper-parameters and the stages, by name.

    tiny   CPU, seconds: byte tokenizer, 3-layer encoder and decoder (tests, the CPU benchmark)
    mid    a GPU smoke/throughput size: 12-layer 768-wide encoder, Qwen3-0.6B-shaped decoder, byte vocab
    4b     the released MOSS-Audio-4B sizes: 32x1280 encoder, taps after 8/16/24, Qwen3-4B decoder
    8b     the same encoder with a Qwen3-8B decoder

The 4b/8b decoders expect pretrained weights and their tokenizer in a local directory
(`decoder.pretrained_path`, the CLI's --decoder-path); their sizes here are used for random init and
for `--count-params`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

from trainer.model.decoder import DecoderConfig
from trainer.model.encoder import EncoderConfig
from trainer.model.model import ModelConfig

PARTS = ("encoder", "adapter", "deepstack", "decoder")


@dataclass
class Stage:
    """Train `train` (names from PARTS), freeze the rest, until global step `until_step` (None: to the end)."""

    name: str
    train: tuple[str, ...] = PARTS
    until_step: int | None = None


@dataclass
class TrainConfig:
    max_steps: int = 1000
    lr: float = 3e-4  # peak learning rate
    min_lr: float = 3e-5  # cosine floor
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimiser step
    tokens_per_batch: int = 8192  # per micro-batch and rank: rows x max_seq_len
    max_seq_len: int = 2048  # one packed row
    task_weights: dict[str, float] = field(default_factory=lambda: {"caption": 1.0, "asr": 1.0, "sft": 1.0})
    stages: list[Stage] = field(default_factory=lambda: [Stage("all")])
    log_interval: int = 10
    eval_interval: int = 0  # 0: no periodic eval
    eval_batches: int = 8
    ckpt_interval: int = 500  # also saved at the last step
    seed: int = 1337
    shuffle_buffer: int = 64  # samples, inside each worker
    num_workers: int = 0  # DataLoader workers per rank
    fsdp: bool = False  # shard with FSDP when distributed (DDP otherwise)
    bf16: bool = True  # autocast to bf16 on GPU (the CPU always runs fp32)
    captions: str | None = None  # a named caption table (`eventcap recaption --name`) in place of <key>.txt

    def stage_at(self, step: int) -> Stage:
        for s in self.stages:
            if s.until_step is None or step < s.until_step:
                return s
        return self.stages[-1]


@dataclass
class RunConfig:
    name: str
    model: ModelConfig
    train: TrainConfig

    def to_dict(self) -> dict:
        return asdict(self)


def _tiny() -> RunConfig:
    model = ModelConfig(
        encoder=EncoderConfig(stem_channels=16, n_layers=3, d_model=64, n_heads=4, ffn=128, tap_layers=(1, 2)),
        decoder=DecoderConfig(vocab_size=264, hidden_size=96, intermediate_size=256, n_layers=3, n_heads=4,
                              n_kv_heads=2, head_dim=24, max_positions=4096, rope_theta=10_000.0),
        adapter_hidden=192, tokenizer="bytes",
    )
    train = TrainConfig(max_steps=200, lr=3e-3, min_lr=3e-4, warmup_steps=10, weight_decay=0.0,
                        tokens_per_batch=2048, max_seq_len=1024, log_interval=10, ckpt_interval=100,
                        shuffle_buffer=8)
    return RunConfig("tiny", model, train)


def _mid() -> RunConfig:
    model = ModelConfig(
        encoder=EncoderConfig(stem_channels=256, n_layers=12, d_model=768, n_heads=12, ffn=3072,
                              tap_layers=(3, 6, 9)),
        decoder=DecoderConfig(vocab_size=264, hidden_size=1024, intermediate_size=3072, n_layers=28,
                              n_heads=16, n_kv_heads=8, head_dim=128),
        adapter_hidden=4096, tokenizer="bytes",
    )
    train = TrainConfig(lr=1e-3, min_lr=1e-4, tokens_per_batch=16384, max_seq_len=4096)
    return RunConfig("mid", model, train)


def _released(name: str, decoder: DecoderConfig) -> RunConfig:
    model = ModelConfig(encoder=EncoderConfig(attention_window=100), decoder=decoder, adapter_hidden=8192,
                        tokenizer="")
    train = TrainConfig(
        lr=1e-4, min_lr=1e-5, warmup_steps=500, max_steps=100_000, tokens_per_batch=32768, max_seq_len=8192,
        fsdp=True, log_interval=10, eval_interval=1000, ckpt_interval=2000,
        stages=[Stage("align", ("adapter", "deepstack"), until_step=2000),
                Stage("audio", ("encoder", "adapter", "deepstack"), until_step=10_000),
                Stage("all", PARTS)],
    )
    return RunConfig(name, model, train)


CONFIGS = {
    "tiny": _tiny,
    "mid": _mid,
    "4b": lambda: _released("4b", DecoderConfig(hidden_size=2560, intermediate_size=9728, n_layers=36,
                                                  n_heads=32, n_kv_heads=8, head_dim=128)),
    "8b": lambda: _released("8b", DecoderConfig(hidden_size=4096, intermediate_size=12288, n_layers=36,
                                                  n_heads=32, n_kv_heads=8, head_dim=128)),
}


def get_config(name: str) -> RunConfig:
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; known: {sorted(CONFIGS)}")
    return copy.deepcopy(CONFIGS[name]())
