"""Load a trained model from what a run left on disk, whichever form it has:

    RUN_DIR                     config.json + tokenizer + checkpoints/latest -> the newest checkpoint
    RUN_DIR/checkpoints/step-N  one checkpoint (its run's config and tokenizer two levels up)
    MOSS_DIR                    a directory in the released MOSS-Audio layout (config.json with
                                model_type "moss_audio", safetensors, tokenizer files): trainer/moss_audio.py

    model, tok, cfg = load_model("runs/tiny")
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.configs import RunConfig, TrainConfig
from trainer.model.model import AudioLM, ModelConfig
from trainer.tokenizer import AUDIO, load_tokenizer


def is_moss_audio_dir(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("model_type") == "moss_audio"


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(run dir, checkpoint dir) for a run dir or a checkpoint dir."""
    path = Path(path)
    if (path / "model.pt").is_file():
        return path.parent.parent, path
    pointer = path / "checkpoints" / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"{path}: no checkpoints/latest and no model.pt (not a run or checkpoint dir)")
    return path, path / "checkpoints" / pointer.read_text().strip()


def run_model_config(run_dir: Path) -> ModelConfig:
    d = json.loads((run_dir / "config.json").read_text())
    cfg = ModelConfig.from_dict(d["model"])
    cfg.decoder.pretrained_path = None  # the checkpoint holds every weight: nothing else is read
    cfg.encoder.whisper_path = None
    return cfg


def run_tokenizer(run_dir: Path, cfg: ModelConfig):
    """The tokenizer a run saved: bytes (tokenizer.txt) or the Hugging Face files in the run dir."""
    if (run_dir / "tokenizer.txt").is_file() or cfg.tokenizer == "bytes":
        return load_tokenizer("bytes")
    return load_tokenizer(str(run_dir))


def load_model(path: str | Path, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> tuple[AudioLM, object, RunConfig]:
    """(model in eval mode, tokenizer, RunConfig) from a run dir, a checkpoint dir or a MOSS-Audio dir."""
    if is_moss_audio_dir(path):
        from trainer.moss_audio import import_moss_audio

        model, tok, mcfg = import_moss_audio(path)
    else:
        run_dir, ckpt = resolve_checkpoint(path)
        mcfg = run_model_config(run_dir)
        tok = run_tokenizer(run_dir, mcfg)
        model = AudioLM(mcfg, audio_token_id=tok.special[AUDIO])
        state = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
        emb = state.get("decoder.lm.model.embed_tokens.weight")
        if emb is not None and emb.shape[0] != model.decoder.lm.get_input_embeddings().num_embeddings:
            model.decoder.lm.resize_token_embeddings(emb.shape[0])
        model.load_state_dict(state)
    model = model.to(device=device, dtype=dtype) if dtype else model.to(device)
    model.eval()
    return model, tok, RunConfig(name=str(path), model=mcfg, train=TrainConfig())
