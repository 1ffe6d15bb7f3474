"""The released MOSS-Audio checkpoint layout: export a model trained here, import a released one.

    eventcap export RUN --format moss-audio OUT_DIR [--dtype bfloat16]
    eventcap train --init-from MOSS_DIR ...          (continue training / fine-tune a released checkpoint)
    model, tok, cfg = import_moss_audio(MOSS_DIR)

A released directory holds `config.json` (model_type "moss_audio": an `audio_config`, a Qwen3
`language_config`, `adapter_hidden_size`, `deepstack_num_inject_layers`), safetensors weights (one file, or
shards with `model.safetensors.index.json`) and the Qwen tokenizer files. Parameter names, ours -> released
(the public modeling_moss_audio.py):

    encoder.stem.convs.{0,1,2}.*      audio_encoder.conv{1,2,3}.*
    encoder.stem.proj.*               audio_encoder.stem_proj.*
    encoder.layers.{i}.*              audio_encoder.layers.{i}.*     (Whisper layer names on both sides)
    encoder.ln_post.*                 audio_encoder.layer_norm.*
    encoder.out_proj.weight           audio_encoder.out_proj.weight   (only when output_dim != d_model)
    adapter.{gate,up,down}.weight     audio_adapter.{gate,up,down}_proj.weight
    deepstack.mergers.{k}.{g,u,d}     deepstack_audio_merger_list.{k}.{gate,up,down}_proj.weight
    decoder.lm.model.*                language_model.*                (Qwen3Model: embed_tokens, layers, norm)
    decoder.lm.lm_head.weight         lm_head.weight

DeepStack taps: the release counts `deepstack_encoder_layer_indexes` from 0 and taps the output of that
layer (index 8 = the 9th layer's output); our `tap_layers` say "after layer k", 1-based: k = index + 1.
Only the first `deepstack_num_inject_layers` taps are used. `encoder_attention_window_size` maps to our
`attention_window`. LoRA matrices are merged into the decoder's weights on export.

What the released files cannot carry: our time-marker interval and tokenizer choice are kept under an
extra "eventcap" key of config.json (ignored by the released code); the byte tokenizer of the tiny config
is written as tokenizer.txt (the released processor needs the Qwen tokenizer of a full config).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from trainer.model.decoder import DecoderConfig
from trainer.model.encoder import EncoderConfig
from trainer.model.lora import LoRAConfig, is_lora_param
from trainer.model.model import AudioLM, ModelConfig
from trainer.tokenizer import AUDIO, IM_END, PAD, load_tokenizer

SHARD_BYTES = 4 * 1024**3
_RENAMES = [  # (our regex, released template), applied in order, first match wins
    (r"^encoder\.stem\.convs\.(\d)\.(.*)$", lambda m: f"audio_encoder.conv{int(m[1]) + 1}.{m[2]}"),
    (r"^encoder\.stem\.proj\.(.*)$", lambda m: f"audio_encoder.stem_proj.{m[1]}"),
    (r"^encoder\.ln_post\.(.*)$", lambda m: f"audio_encoder.layer_norm.{m[1]}"),
    (r"^encoder\.(layers\..*|out_proj\..*)$", lambda m: f"audio_encoder.{m[1]}"),
    (r"^adapter\.(gate|up|down)\.weight$", lambda m: f"audio_adapter.{m[1]}_proj.weight"),
    (r"^deepstack\.mergers\.(\d+)\.(gate|up|down)\.weight$",
     lambda m: f"deepstack_audio_merger_list.{m[1]}.{m[2]}_proj.weight"),
    (r"^decoder\.lm\.model\.(.*)$", lambda m: f"language_model.{m[1]}"),
    (r"^decoder\.lm\.lm_head\.weight$", lambda m: "lm_head.weight"),
]
_BACK = [
    (r"^audio_encoder\.conv(\d)\.(.*)$", lambda m: f"encoder.stem.convs.{int(m[1]) - 1}.{m[2]}"),
    (r"^audio_encoder\.stem_proj\.(.*)$", lambda m: f"encoder.stem.proj.{m[1]}"),
    (r"^audio_encoder\.layer_norm\.(.*)$", lambda m: f"encoder.ln_post.{m[1]}"),
    (r"^audio_encoder\.(layers\..*|out_proj\..*)$", lambda m: f"encoder.{m[1]}"),
    (r"^audio_adapter\.(gate|up|down)_proj\.weight$", lambda m: f"adapter.{m[1]}.weight"),
    (r"^deepstack_audio_merger_list\.(\d+)\.(gate|up|down)_proj\.weight$",
     lambda m: f"deepstack.mergers.{m[1]}.{m[2]}.weight"),
    (r"^language_model\.(.*)$", lambda m: f"decoder.lm.model.{m[1]}"),
    (r"^lm_head\.weight$", lambda m: "decoder.lm.lm_head.weight"),
]


def _rename(name: str, rules) -> str:
    for pattern, fn in rules:
        m = re.match(pattern, name)
        if m:
            return fn(m)
    raise KeyError(f"no released-layout name for {name!r}")


def to_released_name(name: str) -> str:
    return _rename(name, _RENAMES)


def from_released_name(name: str) -> str:
    return _rename(name, _BACK)


# ----------------------------------------------------------------------------- config.json
def released_config(cfg: ModelConfig, tok, dtype: torch.dtype) -> dict:
    """Our ModelConfig -> the released config.json fields."""
    e, d = cfg.encoder, cfg.decoder
    if e.output_dim not in (None, e.d_model) and cfg.n_deepstack:
        raise ValueError("the released DeepStack mergers read output_dim features: needs output_dim == d_model")
    language = d.to_hf()
    language.use_cache = True
    language.architectures = ["Qwen3ForCausalLM"]
    language.eos_token_id = tok.special[IM_END]
    language.bos_token_id = tok.special[PAD]
    lang = language.to_dict()
    lang.pop("_attn_implementation_autoset", None)
    dtype_name = str(dtype).replace("torch.", "")
    return {
        "model_type": "moss_audio",
        "architectures": ["MossAudioModel"],
        "auto_map": {"AutoConfig": "configuration_moss_audio.MossAudioConfig",
                     "AutoModel": "modeling_moss_audio.MossAudioModel"},
        "audio_config": {
            "d_model": e.d_model, "output_dim": e.output_dim or e.d_model, "num_mel_bins": e.n_mels,
            "encoder_layers": e.n_layers, "encoder_attention_heads": e.n_heads, "encoder_ffn_dim": e.ffn,
            "downsample_rate": 8, "downsample_hidden_size": e.stem_channels,
            "encoder_attention_window_size": e.attention_window or e.max_frames,
            "max_source_positions": e.max_frames, "dropout": 0.0, "attention_dropout": 0.0,
            "activation_dropout": 0.0, "activation_function": "gelu", "layer_norm_eps": 1e-5,
            "_attn_implementation": "eager", "pretrained_path": "",
            "deepstack_encoder_layer_indexes": [t - 1 for t in e.tap_layers],
        },
        "language_config": lang,
        "adapter_hidden_size": cfg.adapter_hidden,
        "ignore_index": -100,
        "deepstack_num_inject_layers": cfg.n_deepstack,
        "vocab_size": d.vocab_size, "num_hidden_layers": d.n_layers,
        "eos_token_id": tok.special[IM_END], "bos_token_id": tok.special[PAD],
        "tie_word_embeddings": d.tie_embeddings,
        "dtype": dtype_name,
        "eventcap": {"marker_interval_s": cfg.marker_interval_s, "tokenizer": tok.name,
                     "attention_window": e.attention_window},
    }


def model_config_from_released(conf: dict) -> ModelConfig:
    """The released config.json fields -> our ModelConfig (sizes only: no weights are read)."""
    a, lang = conf["audio_config"], conf["language_config"]
    idx = list(a.get("deepstack_encoder_layer_indexes") or [])
    k = conf.get("deepstack_num_inject_layers")
    idx = idx[: int(k)] if k is not None else idx
    extra = conf.get("eventcap") or {}
    window = a.get("encoder_attention_window_size")
    if "attention_window" in extra:
        window = extra["attention_window"]
    enc = EncoderConfig(
        n_mels=a.get("num_mel_bins", 128), stem_channels=a.get("downsample_hidden_size", 480),
        n_layers=a.get("encoder_layers", 32), d_model=a.get("d_model", 1280),
        n_heads=a.get("encoder_attention_heads", 20), ffn=a.get("encoder_ffn_dim", 5120),
        max_frames=a.get("max_source_positions", 1500), tap_layers=tuple(i + 1 for i in idx) or (1,),
        output_dim=None if a.get("output_dim", a.get("d_model")) == a.get("d_model") else a["output_dim"],
        attention_window=window,
    )
    rope = lang.get("rope_theta") or (lang.get("rope_parameters") or {}).get("rope_theta") or 1_000_000.0
    dec = DecoderConfig(
        vocab_size=lang["vocab_size"], hidden_size=lang["hidden_size"], intermediate_size=lang["intermediate_size"],
        n_layers=lang["num_hidden_layers"], n_heads=lang["num_attention_heads"],
        n_kv_heads=lang.get("num_key_value_heads", lang["num_attention_heads"]),
        head_dim=lang.get("head_dim") or lang["hidden_size"] // lang["num_attention_heads"],
        max_positions=lang.get("max_position_embeddings", 40_960), rope_theta=float(rope),
        rms_norm_eps=lang.get("rms_norm_eps", 1e-6), tie_embeddings=bool(lang.get("tie_word_embeddings", False)),
    )
    return ModelConfig(encoder=enc, decoder=dec, adapter_hidden=conf.get("adapter_hidden_size", 8192),
                       deepstack=bool(idx), marker_interval_s=extra.get("marker_interval_s", 2.0),
                       tokenizer="", lora=LoRAConfig())


# ----------------------------------------------------------------------------- weights
def merged_state(model: AudioLM) -> dict[str, torch.Tensor]:
    """The model's state dict with LoRA folded into the weights it adapts (W + alpha/r B A)."""
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    state = {n: t for n, t in model.state_dict().items() if n in params}  # the fixed mel filterbank stays out
    for name in [n for n in state if n.endswith(".lora_A")]:
        base = name[: -len(".lora_A")]
        a, b = state.pop(name), state.pop(base + ".lora_B")
        module = model.get_submodule(base)
        state[base + ".weight"] = state[base + ".weight"] + (module.scale * (b.float() @ a.float())).to(a.dtype)
    assert not any(is_lora_param(n) for n in state)
    return state


def released_state(model: AudioLM, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in merged_state(model).items():
        t = t.detach().to("cpu")
        out[to_released_name(name)] = (t.to(dtype) if dtype else t).contiguous().clone()
    if model.cfg.decoder.tie_embeddings:
        out.setdefault("lm_head.weight", out["language_model.embed_tokens.weight"].clone())
    return out


def save_safetensors(state: dict[str, torch.Tensor], out_dir: Path, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """One model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json."""
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        n = state[name].numel() * state[name].element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = state[name]
        size += n
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata=meta)
        return ["model.safetensors"]
    names, weight_map = [], {}
    for i, shard in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / fname), metadata=meta)
        names.append(fname)
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return names


def load_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors under {directory}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


# ----------------------------------------------------------------------------- export / import
def export_moss_audio(model: AudioLM, tok, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write `model` in the released layout to `out_dir` (config.json, safetensors, tokenizer files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = released_state(model, dtype)
    dtype = dtype or next(iter(state.values())).dtype
    (out / "config.json").write_text(json.dumps(released_config(model.cfg, tok, dtype), indent=1))
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": tok.special[IM_END], "pad_token_id": tok.special[PAD], "do_sample": False}, indent=1))
    save_safetensors(state, out)
    tok.save(out)
    return out


def import_moss_audio(directory: str | Path, lora: LoRAConfig | None = None):
    """(model, tokenizer, ModelConfig) from a directory in the released layout."""
    directory = Path(directory)
    conf = json.loads((directory / "config.json").read_text())
    if conf.get("model_type") != "moss_audio":
        raise ValueError(f"{directory}/config.json: model_type is {conf.get('model_type')!r}, not 'moss_audio'")
    cfg = model_config_from_released(conf)
    if lora is not None:
        cfg.lora = lora
    tok = load_tokenizer("bytes" if (directory / "tokenizer.txt").is_file() else str(directory))
    cfg.tokenizer = "bytes" if tok.name == "bytes" else str(directory)
    model = AudioLM(cfg, audio_token_id=tok.special[AUDIO])
    load_released_weights(model, directory)
    return model, tok, cfg


def load_released_weights(model: AudioLM, directory: str | Path) -> None:
    """Copy a released directory's tensors into `model` (names mapped; every non-LoRA tensor must be there)."""
    state = {from_released_name(k): v for k, v in load_safetensors(Path(directory)).items()}
    if model.cfg.decoder.tie_embeddings:
        state.pop("decoder.lm.lm_head.weight", None)
    emb = state.get("decoder.lm.model.embed_tokens.weight")
    if emb is not None and emb.shape[0] != model.decoder.lm.get_input_embeddings().num_embeddings:
        model.decoder.lm.resize_token_embeddings(emb.shape[0])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not is_lora_param(m) and not m.startswith("encoder.logmel.")
               and not (model.cfg.decoder.tie_embeddings and m == "decoder.lm.lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"released checkpoint does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
