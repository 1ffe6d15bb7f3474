"""One OpenAI-compatible chat endpoint: the `openai` client, structured output, retries with backoff.

Structured output comes in two dialects: `{"type": "json_schema", "json_schema": {...}}` (vLLM, hosted APIs)
and `{"type": "json_object", "schema": {...}}` (llama.cpp's server, which answers 500 to the first). With
`response_format: auto` the first request tries json_schema; if the endpoint refuses the form itself (a 4xx/5xx
other than 429), the same request goes out as json_object + schema, and whichever worked is kept for the rest
of the run (detected once per endpoint). Timeouts, connection errors, 429 and 5xx are retried with exponential
backoff and jitter (Retry-After honoured, capped); other errors are not. The API key is read from the
environment variable named in the config and never logged.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass

from schemas.config import CaptionConfig

log = logging.getLogger(__name__)

NO_KEY = "no-key"  # local servers take any key; the client insists on one


class EndpointError(Exception):
    """A request that failed for good; `code` is what report.json counts (http_500, timeout, ...)."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class _Refused(Exception):
    """The endpoint answered the json_schema form with an HTTP error (other than 429)."""


@dataclass(frozen=True)
class Reply:
    content: str
    response_format: str  # the dialect that produced it


def _code(e: Exception) -> str:
    import openai

    if isinstance(e, openai.APITimeoutError):
        return "timeout"
    if isinstance(e, openai.APIConnectionError):
        return "connection"
    if isinstance(e, openai.APIStatusError):
        return f"http_{e.status_code}"
    return type(e).__name__


def _retryable(e: Exception) -> bool:
    import openai

    if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(e, openai.APIStatusError) and (e.status_code == 429 or e.status_code >= 500)


def _retry_after(e: Exception) -> float | None:
    import openai

    if isinstance(e, openai.APIStatusError):
        try:
            return float(e.response.headers.get("retry-after", ""))
        except ValueError:
            return None
    return None


class ChatEndpoint:
    """Thread-safe: one instance serves every request of a caption task."""

    def __init__(self, cfg: CaptionConfig, sleep=time.sleep):
        import openai  # imported here: the template merger never pays for it

        self.cfg = cfg
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self.client = openai.OpenAI(
            base_url=cfg.base_url, api_key=key or NO_KEY, max_retries=0,
            timeout=openai.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s))
        self.form = None if cfg.response_format == "auto" else cfg.response_format
        self._detect = threading.Lock()
        self._sleep = sleep
        self.requests = 0  # HTTP requests sent (for throughput numbers)

    # ---------------------------------------------------------------- structured output dialects
    @staticmethod
    def response_format(form: str, schema: dict) -> dict:
        if form == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "caption", "schema": schema, "strict": True}}
        return {"type": "json_object", "schema": schema}

    def cache_identity(self, schema: dict) -> dict:
        """What besides the messages decides a reply (part of the cache key)."""
        return {"base_url": self.cfg.base_url, "model": self.cfg.model, "schema": schema,
                "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}

    # ---------------------------------------------------------------- requests
    def _once(self, messages: list[dict], form: str, schema: dict) -> str:
        self.requests += 1
        r = self.client.chat.completions.create(
            model=self.cfg.model, messages=messages, temperature=self.cfg.temperature,
            max_tokens=self.cfg.max_tokens, response_format=self.response_format(form, schema))
        if not r.choices:
            raise EndpointError("empty_reply", "the endpoint returned no choices")
        return r.choices[0].message.content or ""

    def _with_retries(self, messages: list[dict], form: str, schema: dict, probe: bool = False) -> str:
        """`probe`: an HTTP error other than 429 means the endpoint refuses this dialect (raises _Refused)."""
        import openai

        delay = self.cfg.backoff_s
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return self._once(messages, form, schema)
            except openai.OpenAIError as e:
                if probe and isinstance(e, openai.APIStatusError) and e.status_code != 429:
                    raise _Refused(_code(e)) from None
                if not _retryable(e) or attempt == self.cfg.max_retries:
                    raise EndpointError(_code(e), str(e)[:300]) from None
                wait = _retry_after(e)
                wait = min(self.cfg.max_backoff_s, wait if wait is not None else delay * random.uniform(0.5, 1.5))
                log.info("caption request failed (%s); retry %d in %.2f s", _code(e), attempt + 1, wait)
                self._sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def complete(self, messages: list[dict], schema: dict) -> Reply:
        """The reply text of one chat request under the endpoint's structured-output dialect."""
        if self.form is not None:
            return Reply(self._with_retries(messages, self.form, schema), self.form)
        with self._detect:  # the first request finds the dialect; the others wait for it
            if self.form is not None:
                return Reply(self._with_retries(messages, self.form, schema), self.form)
            try:
                text = self._with_retries(messages, "json_schema", schema, probe=True)
                self.form = "json_schema"
                return Reply(text, "json_schema")
            except _Refused as e:
                log.info("endpoint refused json_schema (%s); trying json_object + schema", e)
            text = self._with_retries(messages, "json_object", schema)
            self.form = "json_object"
            log.info("endpoint %s speaks json_object + schema", self.cfg.base_url)
            return Reply(text, "json_object")
