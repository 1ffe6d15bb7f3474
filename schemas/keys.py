"""Deterministic segment keys (DESIGN.md §3): same input and config -> same keys."""

from __future__ import annotations

import hashlib


def segment_key(source_sha256: str, start_sample: int, end_sample: int, segmentation_hash: str) -> str:
    """32 hex characters; no dots, so WebDataset groups `<key>.flac/.json/.txt` correctly."""
    h = hashlib.sha256(f"{source_sha256}:{start_sample}:{end_sample}:{segmentation_hash}".encode())
    return h.hexdigest()[:32]
