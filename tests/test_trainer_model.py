"""The model: DeepStack's effect, padding/packing invariance, Whisper initialisation, 4b/8b sizes."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
import json
import subprocess
import sys

import pytest
import torch

from trainer.cli import count_params_json
from trainer.configs import get_config
from trainer.model.features import n_audio_frames
from trainer.model.model import AudioLM
from trainer.sequence import build_chat
from trainer.tokenizer import AUDIO, ByteTokenizer

TOK = ByteTokenizer()


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(deepstack=True, seed=0):
    cfg = get_config("tiny").model
    cfg.deepstack = deepstack
    torch.manual_seed(seed)
    return AudioLM(cfg, audio_token_id=TOK.special[AUDIO]).eval()


def one_sample(n_samples=27_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(1, n_samples, generator=g) * 0.2
    ids, labels = build_chat(TOK, [{"role": "user", "content": "Describe the audio."},
                                   {"role": "assistant", "content": "A noise."}], n_audio_frames(n_samples), 2.0)
    ids = torch.tensor([ids])
    return {"input_ids": ids, "position_ids": torch.arange(ids.shape[1])[None], "wav": wav,
            "wav_lengths": torch.tensor([n_samples])}


@torch.no_grad()
def test_deepstack_changes_the_computation_at_audio_positions_only():
    model = tiny_model()
    batch = one_sample()
    audio = batch["input_ids"][0] == TOK.special[AUDIO]
    first, last = audio.nonzero()[0].item(), audio.nonzero()[-1].item()
    logits_on, hidden_on = model(**batch, return_hidden=True)

    off = copy.deepcopy(model)  # the same weights, with every DeepStack projection's output at zero
    for merger in off.deepstack.mergers:
        merger.down.weight.zero_()
    logits_off, hidden_off = off(**batch, return_hidden=True)

    K = len(model.deepstack.mergers)
    assert K == 2
    # right after the first injection (decoder layer 0), states differ exactly at the audio positions
    diff0 = (hidden_on[0] - hidden_off[0]).abs().amax(-1)[0]  # (T,)
    assert (diff0[audio] > 1e-6).all()
    assert (diff0[~audio] == 0).all()
    # before the audio span nothing changes at any depth (causal attention); after it, text sees the change
    for h_on, h_off in zip(hidden_on, hidden_off, strict=True):
        assert torch.equal(h_on[0, :first], h_off[0, :first])
    assert torch.equal(logits_on[0, :first], logits_off[0, :first])
    assert (logits_on[0, last + 1:] - logits_off[0, last + 1:]).abs().amax() > 1e-4

    # K = 0 (the plain model) computes exactly what zeroed injections compute
    plain = tiny_model(deepstack=False)
    plain.load_state_dict({k: v for k, v in off.state_dict().items() if not k.startswith("deepstack.")})
    assert len(plain.deepstack.mergers) == 0
    assert torch.allclose(plain(**batch), logits_off, atol=1e-6)


@torch.no_grad()
def test_padded_and_packed_batches_compute_what_one_sample_does():
    model = tiny_model()
    a, b = one_sample(20_000, seed=1), one_sample(37_000, seed=2)
    alone = model(**a)[0]  # (Ta, V)
    # packed: both samples in one row (positions restart), audio padded to the longer one
    ids = torch.cat([b["input_ids"], a["input_ids"]], dim=1)
    pos = torch.cat([b["position_ids"], a["position_ids"]], dim=1)
    wav = torch.zeros(2, 37_000)
    wav[0], wav[1, :20_000] = b["wav"][0], a["wav"][0]
    packed = model(input_ids=ids, position_ids=pos, wav=wav, wav_lengths=torch.tensor([37_000, 20_000]))
    assert torch.allclose(packed[0, b["input_ids"].shape[1]:], alone, atol=1e-4)


def test_whisper_checkpoint_initialises_the_encoder_layers(tmp_path):
    from transformers import WhisperConfig, WhisperModel

    from trainer.model.encoder import AudioEncoder, EncoderConfig, load_whisper_encoder

    hf = WhisperModel(WhisperConfig(num_mel_bins=128, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                                    encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=4,
                                    decoder_ffn_dim=64, vocab_size=100, max_source_positions=64,
                                    pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)).eval()
    hf.save_pretrained(tmp_path)
    enc = AudioEncoder(EncoderConfig(stem_channels=4, n_layers=2, d_model=32, n_heads=4, ffn=64, tap_layers=(1,)))
    missing = load_whisper_encoder(enc, tmp_path)
    assert all(m.startswith(("stem.", "out_proj")) for m in missing)  # only the 12.5 Hz stem stays random
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        ours = enc.ln_post(enc.layers[1](enc.layers[0](x, torch.ones(2, 10, dtype=torch.bool)),
                                         torch.ones(2, 10, dtype=torch.bool)))
        h = hf.encoder.layers[0](x, attention_mask=None)
        h = hf.encoder.layers[1](h[0] if isinstance(h, tuple) else h, attention_mask=None)
        theirs = hf.encoder.layer_norm(h[0] if isinstance(h, tuple) else h)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("name,lo,hi", [("4b", 4.5e9, 5.5e9), ("8b", 8.5e9, 9.5e9)])
def test_released_configs_report_parameter_counts(name, lo, hi):
    n = count_params_json(get_config(name))
    assert lo < n["total"] < hi
    assert n["total"] == n["encoder"] + n["adapter"] + n["deepstack_projections"] + n["decoder"]
    # the Whisper-large-sized encoder (32 x 1280) and three DeepStack projections of the adapter's size
    assert 6.0e8 < n["encoder"] < 7.0e8
    assert n["deepstack_projections"] == 3 * n["adapter"]


def test_count_params_cli_prints_one_json_object():
    out = subprocess.run([sys.executable, "-m", "trainer.cli", "--config", "8b", "--count-params"],
                         capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    rec = json.loads(out.stdout.strip())
    assert set(rec) >= {"total", "encoder", "adapter", "deepstack_projections", "decoder"}
    assert rec["decoder"] > 8e9
