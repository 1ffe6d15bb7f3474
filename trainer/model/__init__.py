"""The MOSS-Audio-style model, one file per concept: features, encoder, adapter, deepstack, decoder, model."""

from trainer.model.model import AudioLM, ModelConfig, count_params

__all__ = ["AudioLM", "ModelConfig", "count_params"]
