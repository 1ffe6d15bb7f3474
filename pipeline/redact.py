"""Keep credentials out of what a job writes and prints (report.json, logs, quarantine messages).

`redact_config` masks every config value whose key names a credential; `redact_text` replaces the values of
credential-like environment variables (AWS_SECRET_ACCESS_KEY, *_API_KEY, *_TOKEN, ...) wherever they occur.
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_KEY_RE = re.compile(r"(secret|password|passwd|token|api_?key|access_?key|credential|session_key)", re.I)
MASK = "***"


def redact_config(tree: Any) -> Any:
    """A copy of a config tree (dicts/lists) with the values of credential-named keys masked."""
    if isinstance(tree, dict):
        return {k: (MASK if SECRET_KEY_RE.search(str(k)) and v not in (None, "") else redact_config(v))
                for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_config(v) for v in tree]
    return tree


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """Values of credential-named environment variables (at least 6 characters, so masking stays meaningful)."""
    env = os.environ if env is None else env
    return sorted({v for k, v in env.items() if SECRET_KEY_RE.search(k) and len(v) >= 6}, key=len, reverse=True)


def redact_text(text: str, env: dict[str, str] | None = None) -> str:
    for v in secret_values(env):
        text = text.replace(v, MASK)
    return text
