"""Time markers: text form, positions for odd durations and intervals, and their place in the token stream."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from schemas.timemarkers import (
    format_timestamped_words,
    marker_positions,
    marker_text,
    parse_timestamped_words,
)
from trainer.model.encoder import AudioEncoder, EncoderConfig
from trainer.model.features import n_audio_frames
from trainer.sequence import IGNORE, audio_span, build_chat
from trainer.tokenizer import AUDIO, AUDIO_BOS, AUDIO_EOS, ByteTokenizer


def test_marker_text():
    assert [marker_text(s) for s in (2.0, 10.0, 1.5, 0.25, 12.345, 0.0)] == ["2", "10", "1.5", "0.25", "12.35", "0"]


def test_marker_positions_released_interval():
    # 2 s = 25 frames at 12.5 Hz: markers before frames 25, 50, ...; none at 0, none after the last frame
    assert marker_positions(24) == []
    assert marker_positions(25) == [(25, 2.0)]  # exactly 2.0 s of audio: the "2" follows the last frame
    assert marker_positions(26) == [(25, 2.0)]
    assert marker_positions(50) == [(25, 2.0), (50, 4.0)]
    assert marker_positions(51) == [(25, 2.0), (50, 4.0)]
    assert [s for _, s in marker_positions(12 * 25 + 1)][-2:] == [22.0, 24.0]


def test_marker_positions_fractional_frames():
    # 1.5 s = 18.75 frames: marker k goes before the first frame starting at or after 1.5 k seconds
    assert marker_positions(60, interval_s=1.5) == [(19, 1.5), (38, 3.0), (57, 4.5)]
    # 0.1 s = 1.25 frames; text stays short ("0.3", not "0.30000000000000004")
    pos = marker_positions(6, interval_s=0.1)
    assert pos == [(2, 0.1), (3, 0.2), (4, 0.3), (5, 0.4)]
    for frame, seconds in pos:
        assert frame / 12.5 >= seconds - 1e-9 > (frame - 1) / 12.5


def split_span(tok, ids):
    """Audio span ids -> [(placeholders seen so far, marker text)] and the placeholder count."""
    sp = tok.special
    assert ids[0] == sp[AUDIO_BOS] and ids[-1] == sp[AUDIO_EOS]
    markers, n_audio, text = [], 0, []
    for i in ids[1:-1]:
        if i == sp[AUDIO]:
            if text:
                markers.append((n_audio, tok.decode(text)))
                text = []
            n_audio += 1
        else:
            text.append(i)
    if text:  # a marker may close the span (the audio lasts exactly up to its time)
        markers.append((n_audio, tok.decode(text)))
    return markers, n_audio


@pytest.mark.parametrize("duration_s", [0.37, 1.99, 2.0, 2.05, 3.37, 4.0, 4.09, 7.77])
@pytest.mark.parametrize("interval_s", [2.0, 1.5, 0.7])
def test_span_markers_sit_at_the_right_frames(duration_s, interval_s):
    tok = ByteTokenizer()
    n_samples = int(round(duration_s * 16000))
    n_frames = n_audio_frames(n_samples)
    markers, n_audio = split_span(tok, audio_span(tok, n_frames, interval_s))
    assert n_audio == n_frames
    expected = []
    k = 1
    while True:  # independent of marker_positions: walk the frames' start times
        t = round(k * interval_s, 6)
        if t * 12.5 > n_frames + 1e-9:  # the audio does not last until t
            break
        first = next(f for f in range(n_frames + 1) if f / 12.5 >= t - 1e-9)
        expected.append((first, marker_text(t)))
        k += 1
    assert markers == expected
    assert all(text.replace(".", "").isdigit() for _, text in markers)


@pytest.mark.parametrize("duration_s", [0.5, 1.37, 3.37, 5.03])
def test_placeholders_equal_encoder_frames(duration_s):
    enc = AudioEncoder(EncoderConfig(stem_channels=4, n_layers=1, d_model=16, n_heads=2, ffn=32, tap_layers=(1,)))
    n = int(round(duration_s * 16000))
    final, taps, n_frames = enc(torch.randn(1, n) * 0.1, torch.tensor([n]))
    assert final.shape[1] == int(n_frames[0]) == n_audio_frames(n)
    tok = ByteTokenizer()
    _, n_audio = split_span(tok, audio_span(tok, n_audio_frames(n), 2.0))
    assert n_audio == final.shape[1]


def test_chat_loss_mask_covers_only_the_answer():
    tok = ByteTokenizer()
    ids, labels = build_chat(tok, [{"role": "user", "content": "Describe."},
                                   {"role": "assistant", "content": "A tone."}], 30, 2.0)
    assert len(ids) == len(labels)
    trained = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    assert tok.decode(trained) == "A tone.<|im_end|>"
    assert tok.decode(ids).count("<|AUDIO|>") == 30


def test_timestamped_words_round_trip():
    words = [{"word": "hello", "start_s": 0.05, "end_s": 0.5}, {"word": "world", "start_s": 1.0, "end_s": 1.437}]
    text = format_timestamped_words(words)
    assert text == "[0.05-0.5] hello [1-1.44] world"
    back = parse_timestamped_words(text)
    assert [w["word"] for w in back] == ["hello", "world"]
    assert [(w["start_s"], w["end_s"]) for w in back] == [(0.05, 0.5), (1.0, 1.44)]


def released_span(n_frames: int, audio: int, digit: dict[str, int]) -> list[int]:
    """The released processor's audio span (without bos/eos), restated from its description: for each
    even whole second up to int(n_frames / 12.5), the placeholders up to frame second * 12.5, then the
    second's digits; then the remaining placeholders."""
    out: list[int] = []
    done = 0
    for second in range(2, int(n_frames / 12.5) + 1, 2):
        upto = second // 2 * 25
        out += [audio] * (upto - done)
        done = upto
        out += [digit[c] for c in str(second)]
    return out + [audio] * (n_frames - done)


def test_span_equals_released_processor_for_1_to_400_frames():
    tok = ByteTokenizer()
    sp = tok.special
    digit = {c: tok.encode(c)[0] for c in "0123456789"}
    for n in range(1, 401):
        ours = audio_span(tok, n, 2.0)
        assert ours[0] == sp[AUDIO_BOS] and ours[-1] == sp[AUDIO_EOS]
        assert ours[1:-1] == released_span(n, sp[AUDIO], digit), n
    # the cases the issue names: 25 frames -> 25 placeholders then "2"; 50 -> "2" after 25, "4" at the end
    assert tok.decode(audio_span(tok, 25, 2.0)[1:-1]) == "<|AUDIO|>" * 25 + "2"
    assert tok.decode(audio_span(tok, 50, 2.0)[1:-1]) == "<|AUDIO|>" * 25 + "2" + "<|AUDIO|>" * 25 + "4"
