"""A content-addressed reply cache: sha256(prompt + model + schema + sampling) -> the endpoint's reply text.

It lives in the job's output directory (`OUT/caption_cache/ab/abcdef....json`, any `pyarrow.fs` filesystem),
so a rerun or a re-caption with the same model and prompt pays nothing twice. Entries are written atomically
(a reader sees a whole entry or none); a reply is cached whatever the checks later say about it, since the
same request would get the same judgement.
"""

from __future__ import annotations

import hashlib
import json


def request_hash(messages: list[dict], identity: dict) -> str:
    blob = json.dumps({"messages": messages, **identity}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    def __init__(self, output: str):
        from pipeline.sources import filesystem_for

        self.fs, root = filesystem_for(output.rstrip("/"))
        self.root = f"{root}/caption_cache"
        self.hits = 0

    def _path(self, h: str) -> str:
        return f"{self.root}/{h[:2]}/{h}.json"

    def get(self, h: str) -> str | None:
        try:
            with self.fs.open_input_stream(self._path(h)) as f:
                entry = json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None
        self.hits += 1
        return entry.get("reply")

    def put(self, h: str, reply: str, meta: dict) -> None:
        from pipeline.ledger import write_atomic

        data = json.dumps({"reply": reply, **meta}, ensure_ascii=False).encode()
        try:
            write_atomic(self.fs, self._path(h), data)
        except OSError:  # a cache that cannot be written costs a rerun, never the caption
            pass

