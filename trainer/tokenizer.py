"""Tokenizers: a byte-level one for the tiny config (no download, no training, digits are single tokens),
and the decoder's own Hugging Face tokenizer, loaded from its local directory, for the full configs.

Both expose the same small surface: `encode(text) -> list[int]`, `decode(ids) -> str`, `vocab_size`,
and the ids of the special tokens the sequence builder needs (`SPECIAL_TOKENS`).
"""

from __future__ import annotations

from pathlib import Path

# Qwen's chat and audio tokens (the released processor's audio ids are 151669, 151654, 151670)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
AUDIO_BOS, AUDIO, AUDIO_EOS = "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"
PAD = "<|endoftext|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, AUDIO_BOS, AUDIO, AUDIO_EOS)
QWEN_IM_END = 151645
RELEASED_AUDIO_IDS = {AUDIO: 151654, AUDIO_BOS: 151669, AUDIO_EOS: 151670}


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; the special tokens follow. Vocabulary rounded up to a multiple of 8."""

    name = "bytes"

    def __init__(self):
        self.special = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.vocab_size = (256 + len(SPECIAL_TOKENS) + 7) // 8 * 8

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        inv = {v: k for k, v in self.special.items()}
        out, buf = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                buf.append(i)
                continue
            out.append(buf.decode("utf-8", errors="replace"))
            buf = bytearray()
            out.append(inv.get(i, ""))
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def save(self, directory: str | Path) -> None:
        (Path(directory) / "tokenizer.txt").write_text("bytes\n")


class HFTokenizer:
    """The decoder's tokenizer from a local directory; missing special tokens are added."""

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer

        self.name = str(path)
        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        missing = [t for t in SPECIAL_TOKENS if self.tok.convert_tokens_to_ids(t) in (None, self.tok.unk_token_id)]
        released = {}
        if self.tok.convert_tokens_to_ids(IM_END) == QWEN_IM_END and set(missing) <= set(RELEASED_AUDIO_IDS):
            # a Qwen tokenizer without audio tokens: use the ids the released MOSS-Audio processor uses
            # (<|AUDIO|> aliases 151654; bos/eos take 151669/151670, inside Qwen's 151,936-row embedding)
            released = {t: RELEASED_AUDIO_IDS[t] for t in missing}
            missing = []
        if missing:
            self.tok.add_special_tokens({"additional_special_tokens": missing})
        self.special = {t: released.get(t, self.tok.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}
        self.vocab_size = max(len(self.tok), max(self.special.values()) + 1)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        inv = {v: k for k, v in self.special.items()}
        out, run = [], []
        for i in (int(i) for i in ids):
            if i in inv and i >= len(self.tok):  # a released audio id the tokenizer itself does not know
                out.append(self.tok.decode(run))
                out.append(inv[i])
                run = []
            else:
                run.append(i)
        out.append(self.tok.decode(run))
        return "".join(out)

    def save(self, directory: str | Path) -> None:
        self.tok.save_pretrained(str(directory))


def load_tokenizer(name_or_path: str | None):
    """"bytes" (or None) -> ByteTokenizer; a directory -> that directory's Hugging Face tokenizer."""
    if name_or_path in (None, "", "bytes"):
        return ByteTokenizer()
    return HFTokenizer(name_or_path)
