"""Generation (KV cache, batching, stop, thinking) and task evaluation, down to an overfit run: the tiny
config memorises a handful of SFT samples (caption, asr, asr_ts); `generate` then reproduces their answers
and `evaluate` reports WER 0 and AAS 0 on them, and finite scores on unseen samples."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from tests.sft_fixtures import overfit_set, unseen_set, write_audio_shard, write_sft_shard
from trainer.configs import get_config
from trainer.evaluate import read_sft_samples, run_evaluate
from trainer.generate import Generator, split_thinking
from trainer.train import build_model, train

OVERFIT_STEPS = 50


def test_split_thinking():
    assert split_thinking("<think>a dog, then a car</think>\nA dog barks.") == ("a dog, then a car", "A dog barks.")
    assert split_thinking("A dog barks.") == (None, "A dog barks.")
    assert split_thinking("<think>still thinking") == ("still thinking", "")


def test_cached_batched_decoding_equals_full_forward():
    torch.manual_seed(0)
    model, tok = build_model(get_config("tiny"))
    model.eval()
    gen = Generator(model, tok)
    wavs = [torch.randn(40000) * 0.1, torch.randn(21000) * 0.1]  # 25 and 13 frames: different prompt lengths
    prompts = ["Describe the audio.", "Transcribe."]
    batched = gen.generate(wavs, prompts, max_new_tokens=6)
    for wav, prompt, out in zip(wavs, prompts, batched, strict=True):
        assert out.token_ids == gen.generate([wav], prompt, max_new_tokens=6)[0].token_ids  # batch = alone
        seq = gen.prompt_ids(wav.numel(), prompt)
        for t in out.token_ids:  # each cached step picks the argmax of a full, uncached forward pass
            with torch.no_grad():
                logits = model(torch.tensor([seq]), torch.arange(len(seq))[None], wav[None], torch.tensor([wav.numel()]))
            assert int(logits[0, -1].argmax()) == t
            seq.append(t)
    sampled = gen.generate(wavs, prompts, max_new_tokens=6, temperature=1.0, top_k=20, seed=3)
    again = gen.generate(wavs, prompts, max_new_tokens=6, temperature=1.0, top_k=20, seed=3)
    assert [s.token_ids for s in sampled] == [a.token_ids for a in again]


def test_reader_resolves_audio_refs_and_counts_missing_audio(tmp_path):
    items = overfit_set()
    write_audio_shard(tmp_path / "annotate" / "shards" / "shard-000000.tar", items[:4])
    write_sft_shard(tmp_path / "sft" / "shards" / "shard-000000.tar", items, embed_audio=False)
    samples, skipped = read_sft_samples([str(tmp_path / "sft" / "shards")], ["caption", "asr", "asr_ts"],
                                        audio_roots=[str(tmp_path / "annotate" / "shards")])
    assert [s.key for s in samples] == [k for k, _, _ in items[:4]]
    assert all(s.wav.numel() == a.size for s, (_, a, _) in zip(samples, items, strict=False))
    assert skipped == {"no_audio": 2}
    only_asr, _ = read_sft_samples([str(tmp_path / "sft" / "shards")], ["asr"], limit=1,
                                   audio_roots=[str(tmp_path / "annotate" / "shards")])
    assert [s.task for s in only_asr] == ["asr"]
    assert only_asr[0].field("transcript") == "hello there"


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    write_sft_shard(root / "sft" / "shards" / "shard-000000.tar", overfit_set())
    write_sft_shard(root / "unseen" / "shards" / "shard-000000.tar", unseen_set())
    cfg = get_config("tiny")
    t = cfg.train
    t.max_steps, t.lr, t.min_lr, t.warmup_steps = OVERFIT_STEPS, 6e-3, 1e-4, 10
    t.tokens_per_batch = t.max_seq_len = 600  # one row: about the six samples (79-105 tokens each) a step
    t.shuffle_buffer, t.log_interval, t.ckpt_interval = 0, 15, 1000
    train(cfg, [str(root / "sft" / "shards")], root / "run", emit=lambda rec: None)
    return root


@pytest.mark.slow
def test_overfit_generate_reproduces_answers(overfit_run, capsys):
    gen = Generator.from_checkpoint(overfit_run / "run", device="cpu")
    items = overfit_set()
    outs = gen.generate([a for _, a, _ in items], [s["prompt"] for _, _, s in items], max_new_tokens=80)
    assert [o.answer for o in outs] == [s["answer"] for _, _, s in items]
    assert all(o.stopped for o in outs)  # each ended at <|im_end|>, not at max_new_tokens

    import soundfile as sf

    from jobs.cli import main

    path = overfit_run / "ts220.wav"
    sf.write(path, items[4][1], 16000)
    assert main(["generate", "--checkpoint", str(overfit_run / "run"), "--audio", str(path),
                 "--prompt", items[4][2]["prompt"], "--max-new-tokens", "80", "--device", "cpu"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["answer"] == items[4][2]["answer"] and rec["stopped"]


@pytest.mark.slow
def test_overfit_evaluate_scores(overfit_run):
    run = overfit_run / "run"
    seen = run_evaluate(str(run), [str(overfit_run / "sft" / "shards")], output=str(overfit_run / "seen"),
                        max_new_tokens=80, device="cpu")["tasks"]
    assert seen["caption"]["exact"] == 1.0
    assert seen["asr"]["wer"] == 0.0 and seen["asr"]["cer"] == 0.0
    assert seen["asr_ts"]["wer"] == 0.0
    assert seen["asr_ts"]["aas_ms"] == pytest.approx(0.0, abs=1e-6) and seen["asr_ts"]["aas_matched_words"] == 5
    assert (overfit_run / "seen" / "evaluate.json").is_file()
    assert "| asr_ts | 2 |" in (overfit_run / "seen" / "evaluate.md").read_text()

    unseen = run_evaluate(str(run), [str(overfit_run / "unseen" / "shards")], output=str(overfit_run / "unseen_ev"),
                          max_new_tokens=80, device="cpu")["tasks"]
    assert set(unseen) == {"caption", "asr", "asr_ts"}
    for task in unseen.values():
        assert math.isfinite(task["wer"]) and task["n"] == 1
    if unseen["asr_ts"]["aas_matched_words"]:
        assert math.isfinite(unseen["asr_ts"]["aas_ms"])
    print(json.dumps({"seen": seen, "unseen": unseen}))
