"""The released MOSS-Audio layout: a tiny checkpoint written the way the release names and configures it
loads (import, --init-from); export -> import round-trips every tensor bit-exactly and the logits."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import load_file, save_file

from tests.sft_fixtures import overfit_set, write_sft_shard
from trainer.generate import Generator
from trainer.moss_audio import export_moss_audio, import_moss_audio, to_released_name
from trainer.runs import load_model
from trainer.tokenizer import ByteTokenizer

ENC = dict(d_model=32, heads=4, ffn=64, layers=3, stem=8, mels=128)
LANG = dict(vocab=264, hidden=48, inter=96, layers=3, heads=4, kv=2, head_dim=12)
ADAPTER = 64
TAPS = [0, 1]  # 0-based encoder layer indexes, as the release counts them


def released_config() -> dict:
    """A config.json with the fields of the public release's MossAudioConfig, tiny sizes."""
    return {
        "model_type": "moss_audio", "architectures": ["MossAudioModel"],
        "audio_config": {
            "d_model": ENC["d_model"], "output_dim": ENC["d_model"], "num_mel_bins": ENC["mels"],
            "encoder_layers": ENC["layers"], "encoder_attention_heads": ENC["heads"], "encoder_ffn_dim": ENC["ffn"],
            "downsample_rate": 8, "downsample_hidden_size": ENC["stem"], "encoder_attention_window_size": 100,
            "max_source_positions": 1500, "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
            "activation_function": "gelu", "layer_norm_eps": 1e-5, "_attn_implementation": "eager",
            "pretrained_path": "", "deepstack_encoder_layer_indexes": TAPS,
        },
        "language_config": {
            "model_type": "qwen3", "vocab_size": LANG["vocab"], "hidden_size": LANG["hidden"],
            "intermediate_size": LANG["inter"], "num_hidden_layers": LANG["layers"],
            "num_attention_heads": LANG["heads"], "num_key_value_heads": LANG["kv"], "head_dim": LANG["head_dim"],
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "hidden_act": "silu",
        },
        "adapter_hidden_size": ADAPTER, "ignore_index": -100, "deepstack_num_inject_layers": len(TAPS),
        "vocab_size": LANG["vocab"], "num_hidden_layers": LANG["layers"], "tie_word_embeddings": False,
    }


def released_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the public modeling_moss_audio.py for the config above."""
    d, c, h, v = ENC["d_model"], ENC["stem"], LANG["hidden"], LANG["vocab"]
    q, kv = LANG["heads"] * LANG["head_dim"], LANG["kv"] * LANG["head_dim"]
    s = {"audio_encoder.conv1.weight": (c, 1, 3, 3), "audio_encoder.conv1.bias": (c,),
         "audio_encoder.conv2.weight": (c, c, 3, 3), "audio_encoder.conv2.bias": (c,),
         "audio_encoder.conv3.weight": (c, c, 3, 3), "audio_encoder.conv3.bias": (c,),
         "audio_encoder.stem_proj.weight": (d, c * 16), "audio_encoder.stem_proj.bias": (d,),
         "audio_encoder.layer_norm.weight": (d,), "audio_encoder.layer_norm.bias": (d,),
         "language_model.embed_tokens.weight": (v, h), "language_model.norm.weight": (h,),
         "lm_head.weight": (v, h)}
    for i in range(ENC["layers"]):
        p = f"audio_encoder.layers.{i}."
        s.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.q_proj.bias": (d,),
                  p + "self_attn.k_proj.weight": (d, d),
                  p + "self_attn.v_proj.weight": (d, d), p + "self_attn.v_proj.bias": (d,),
                  p + "self_attn.out_proj.weight": (d, d), p + "self_attn.out_proj.bias": (d,),
                  p + "self_attn_layer_norm.weight": (d,), p + "self_attn_layer_norm.bias": (d,),
                  p + "fc1.weight": (ENC["ffn"], d), p + "fc1.bias": (ENC["ffn"],),
                  p + "fc2.weight": (d, ENC["ffn"]), p + "fc2.bias": (d,),
                  p + "final_layer_norm.weight": (d,), p + "final_layer_norm.bias": (d,)})
    for prefix in ["audio_adapter."] + [f"deepstack_audio_merger_list.{k}." for k in range(len(TAPS))]:
        s.update({prefix + "gate_proj.weight": (ADAPTER, d), prefix + "up_proj.weight": (ADAPTER, d),
                  prefix + "down_proj.weight": (h, ADAPTER)})
    for i in range(LANG["layers"]):
        p = f"language_model.layers.{i}."
        s.update({p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                  p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
                  p + "self_attn.q_norm.weight": (LANG["head_dim"],), p + "self_attn.k_norm.weight": (LANG["head_dim"],),
                  p + "mlp.gate_proj.weight": (LANG["inter"], h), p + "mlp.up_proj.weight": (LANG["inter"], h),
                  p + "mlp.down_proj.weight": (h, LANG["inter"]),
                  p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)})
    return s


def write_released_checkpoint(path) -> dict[str, torch.Tensor]:
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    state = {n: torch.randn(shape, generator=g) * 0.2 for n, shape in released_shapes().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(released_config()))
    (path / "tokenizer.txt").write_text("bytes\n")  # the tiny model's byte tokenizer (no Qwen files offline)
    return state


def logits_of(model, n_samples=24000):
    torch.manual_seed(1)
    wav = torch.randn(n_samples) * 0.1
    ids = Generator(model, ByteTokenizer()).prompt_ids(n_samples, "Describe the audio.")
    with torch.no_grad():
        return model(torch.tensor([ids]), torch.arange(len(ids))[None], wav[None], torch.tensor([n_samples]))


def test_released_checkpoint_imports_and_round_trips(tmp_path):
    written = write_released_checkpoint(tmp_path / "released")
    model, tok, cfg = import_moss_audio(tmp_path / "released")
    assert cfg.encoder.tap_layers == (1, 2)  # release index 0 = output of the first layer = our "after layer 1"
    assert cfg.encoder.attention_window == 100 and cfg.adapter_hidden == ADAPTER
    ours = {to_released_name(n): t for n, t in model.named_parameters()}
    assert set(ours) == set(written)
    assert all(torch.equal(ours[n], written[n]) for n in written)

    export_moss_audio(model, tok, tmp_path / "exported")
    exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert set(exported) == set(written)
    assert all(torch.equal(exported[n], written[n]) for n in written)  # bit-exact
    conf = json.loads((tmp_path / "exported" / "config.json").read_text())
    ref = released_config()
    for k in ("model_type", "adapter_hidden_size", "deepstack_num_inject_layers"):
        assert conf[k] == ref[k]
    for k, v in ref["audio_config"].items():
        if k not in ("dropout", "attention_dropout"):
            assert conf["audio_config"][k] == v, k
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim"):
        assert conf["language_config"][k] == ref["language_config"][k], k

    again, _, _ = load_model(tmp_path / "exported")
    assert torch.equal(logits_of(model), logits_of(again))


def test_trained_run_exports_with_lora_merged_and_init_from_trains(tmp_path):
    from trainer.cli import main

    write_released_checkpoint(tmp_path / "released")
    data = write_sft_shard(tmp_path / "sft" / "shards" / "shard-000000.tar", overfit_set()[:3])
    run = tmp_path / "run"
    assert main(["--config", "tiny", "--init-from", str(tmp_path / "released"), "--data", str(data.parent),
                 "--output", str(run), "--max-steps", "2", "--lora-rank", "2", "--log-interval", "1"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["decoder"]["hidden_size"] == LANG["hidden"] and cfg["model"]["lora"]["rank"] == 2
    trained, tok, _ = load_model(run)
    state = trained.state_dict()
    released = load_file(str(tmp_path / "released" / "model.safetensors"))
    # LoRA froze the decoder's own weights; the encoder trained
    assert torch.equal(state["decoder.lm.model.layers.1.mlp.up_proj.weight"],
                       released["language_model.layers.1.mlp.up_proj.weight"])
    assert not torch.equal(state["encoder.stem.proj.weight"], released["audio_encoder.stem_proj.weight"])

    assert main_export(["export", str(run), str(tmp_path / "out"), "--format", "moss-audio"]) == 0
    exported, _, _ = load_model(tmp_path / "out")
    assert not any("lora" in n for n in exported.state_dict())
    assert torch.allclose(logits_of(trained), logits_of(exported), atol=1e-4)


def main_export(argv):
    from jobs.cli import main

    return main(argv)
