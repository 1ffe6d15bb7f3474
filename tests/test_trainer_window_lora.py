"""Encoder windowed attention, and LoRA on the decoder."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from trainer.configs import Stage, get_config
from trainer.model.encoder import AudioEncoder, EncoderConfig, EncoderLayer, attention_mask
from trainer.model.lora import LoRAConfig, LoRALinear, merge_lora
from trainer.train import build_model, set_stage

SMALL = dict(stem_channels=4, n_layers=2, d_model=16, n_heads=2, ffn=32, tap_layers=(1,))


def test_window_covering_the_input_equals_full_attention():
    torch.manual_seed(0)
    full = AudioEncoder(EncoderConfig(**SMALL)).eval()
    windowed = AudioEncoder(EncoderConfig(**SMALL, attention_window=40)).eval()
    windowed.load_state_dict(full.state_dict())
    wav, n = torch.randn(2, 32000) * 0.1, torch.tensor([32000, 20000])  # 25 and 15 frames
    a, _, _ = full(wav, n)
    b, _, _ = windowed(wav, n)
    assert torch.equal(a, b)
    small = AudioEncoder(EncoderConfig(**SMALL, attention_window=10)).eval()
    small.load_state_dict(full.state_dict())
    c, _, _ = small(wav, n)
    assert not torch.allclose(a[0, :25], c[0, :25], atol=1e-4)


def test_frames_outside_the_window_get_no_attention_weight():
    torch.manual_seed(0)
    cfg = EncoderConfig(**SMALL, attention_window=8)
    layer = EncoderLayer(cfg).eval()
    x = torch.randn(1, 32, 16, requires_grad=True)
    mask = attention_mask(torch.tensor([20]), 32, 8)  # windows 0-7, 8-15, 16-23 (16-19 valid), 24-31 (padding)
    y = layer(x, mask)
    y[0, 8:16].sum().backward()  # the middle window's outputs ...
    g = x.grad[0].abs().sum(-1)
    assert (g[:8] == 0).all() and (g[16:] == 0).all()  # ... depend on nothing outside it
    assert (g[8:16] > 0).all()
    m = mask[0, 0]
    assert m[3, :8].all() and not m[3, 8:].any()
    assert m[17, 16:20].all() and not m[17, 20:].any()  # padding keys are masked inside a window too
    assert m[27, 27] and m[27].sum() == 1  # a window of padding only: each frame attends itself (no NaN row)
    assert torch.isfinite(y).all()


def test_lora_trains_only_its_matrices_and_merges_exactly():
    torch.manual_seed(0)
    cfg = get_config("tiny")
    cfg.model.lora = LoRAConfig(rank=4, alpha=8.0)
    model, _ = build_model(cfg)
    wrapped = [m for m in model.decoder.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 7 * cfg.model.decoder.n_layers
    names = dict(model.named_parameters())
    assert "decoder.lm.model.layers.0.self_attn.q_proj.weight" in names  # base names are kept
    set_stage(model, Stage("all"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("decoder.")}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("encoder."))

    x = torch.randn(3, cfg.model.decoder.hidden_size)
    layer = model.decoder.layers[0].self_attn.q_proj
    base = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.equal(layer(x), base)  # B starts at zero: LoRA starts as the identity change
    with torch.no_grad():
        for m in wrapped:
            m.lora_B.normal_(0, 0.1)
    before = layer(x)
    assert not torch.allclose(before, base)
    merge_lora(model.decoder)
    assert not any(isinstance(m, LoRALinear) for m in model.decoder.modules())
    assert torch.allclose(model.decoder.layers[0].self_attn.q_proj(x), before, atol=1e-5)
