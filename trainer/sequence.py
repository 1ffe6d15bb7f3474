"""The interleaved token sequence: chat text, the audio span with time markers, and the loss mask.

    <|im_start|>user\n<|audio_bos|> A A ... A 2 A A ... A 4 A ... <|audio_eos|>{prompt}<|im_end|>\n
    <|im_start|>assistant\n{target}<|im_end|>\n

`A` is one `<|AUDIO|>` placeholder per encoder frame (12.5 Hz); the digits are the time markers of
`schemas.timemarkers`, written as ordinary text tokens. Loss is on the assistant text and its
closing `<|im_end|>` only. Returned `labels` hold the token id where the loss applies and -100 elsewhere
(the model shifts them by one).
"""

from __future__ import annotations

from schemas.timemarkers import FRAME_RATE_HZ, marker_positions, marker_text
from trainer.tokenizer import AUDIO, AUDIO_BOS, AUDIO_EOS, IM_END, IM_START

IGNORE = -100


def audio_span(tok, n_frames: int, marker_interval_s: float | None) -> list[int]:
    """<|audio_bos|>, n_frames placeholders with marker digits between them, <|audio_eos|>."""
    sp = tok.special
    markers = dict(marker_positions(n_frames, FRAME_RATE_HZ, marker_interval_s)) if marker_interval_s else {}
    ids = [sp[AUDIO_BOS]]
    for frame in range(n_frames + 1):
        if frame in markers:  # a marker at frame n_frames closes the span, as in the released processor
            ids += tok.encode(marker_text(markers[frame]))
        if frame < n_frames:
            ids.append(sp[AUDIO])
    ids.append(sp[AUDIO_EOS])
    return ids


def build_chat(tok, messages: list[dict], n_frames: int, marker_interval_s: float | None):
    """messages [{role, content}] -> (ids, labels). The audio span opens the first user turn, or replaces
    an explicit "<audio>" in it."""
    sp = tok.special
    ids: list[int] = []
    labels: list[int] = []

    def add(tokens: list[int], train: bool):
        ids.extend(tokens)
        labels.extend(tokens if train else [IGNORE] * len(tokens))

    audio_done = False
    for msg in messages:
        role, content = msg["role"], msg["content"]
        add([sp[IM_START]] + tok.encode(f"{role}\n"), False)
        if role == "assistant":
            add(tok.encode(content) + [sp[IM_END]], True)
            add(tok.encode("\n"), False)
            continue
        if role == "user" and not audio_done:
            before, _, after = content.partition("<audio>") if "<audio>" in content else ("", "", content)
            add(tok.encode(before) + audio_span(tok, n_frames, marker_interval_s) + tok.encode(after), False)
            audio_done = True
        else:
            add(tok.encode(content), False)
        add([sp[IM_END]] + tok.encode("\n"), False)
    if not audio_done:
        raise ValueError("a conversation needs a user turn to hold the audio")
    return ids, labels
