"""LLM endpoint faults inside a real `eventcap annotate` run with `caption.merger: llm`: a local server on
127.0.0.1 that, per segment, answers 500, 429, too slowly, with no JSON, with JSON off the schema, or drops the
connection. Every segment gets the template caption, and report.json counts the fallbacks by reason."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tests import llm_servers as L
from tests import synth as S
from tests.reliability.faults import annotate, finish
from tests.reliability.hostile import _content

pytestmark = pytest.mark.slow  # one job run (~1.5 min on a loaded 2-core machine)

REASON = {"500": "http_500", "429": "http_429", "slow": "timeout", "not-json": "not_json", "schema-break": "schema",
          "drop": "connection"}
MODES = list(REASON)
TIMEOUT_S = 1.0


class _FaultyHandler(L._Handler):
    """The stub's handler, with the fault chosen per segment (its data block), so retries meet the same fault."""

    def _answer(self, body: dict, n: int) -> None:
        user = L.clip_turn(body)
        data = L.DATA_BLOCK.search(user)
        seg = hashlib.sha256((data.group(1) if data else user).encode()).hexdigest()
        with self.server.lock:
            mode = self.server.modes.setdefault(seg, MODES[len(self.server.modes) % len(MODES)])
        if mode == "drop":  # the connection closes with no reply
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "slow":
            time.sleep(TIMEOUT_S * 3)
        body["model"] = mode if mode != "slow" else "ok"
        super()._answer(body, n)


class FaultyChatServer(L.StubChatServer):
    def __init__(self):
        super().__init__()
        self.RequestHandlerClass = _FaultyHandler
        self.modes: dict[str, str] = {}


def test_every_endpoint_fault_falls_back_to_the_template_and_is_counted_by_reason(tmp_path):
    corpus = tmp_path / "in"
    corpus.mkdir()
    for i in range(3):
        S.write(corpus / f"bursts_{i}.wav", _content(10.0, seed=40 + i))
    with FaultyChatServer() as srv:
        t0 = time.time()
        rc, log = finish(annotate(corpus, tmp_path / "out", "--set", "caption.merger=llm",
                                  "--set", f"caption.base_url={srv.base_url}", "--set", "caption.model=faulty",
                                  "--set", "caption.response_format=json_object",
                                  "--set", f"caption.timeout_s={TIMEOUT_S}", "--set", "caption.max_retries=1",
                                  "--set", "caption.backoff_s=0.05", "--set", "caption.max_in_flight=1"))
        print(f"llm faults: {time.time() - t0:.1f} s, modes {Counter(srv.modes.values())}")
    assert rc == 0, log
    m = pq.read_table(tmp_path / "out" / "manifest", columns=["caption", "caption_source"]).to_pylist()
    assert m and {r["caption_source"] for r in m} == {"template_fallback"} and all(r["caption"] for r in m)
    report = json.loads((tmp_path / "out" / "report.json").read_text())["captions"]["fallbacks_by_reason"]
    served = Counter(REASON[mode] for mode in srv.modes.values())  # per distinct prompt: two segments can
    assert set(served) == set(REASON.values()), "every fault met at least one segment"  # share their facts
    # a caption task stops calling an endpoint that dropped 4 connections in a row (the circuit breaker)
    down = report.pop("endpoint_down", 0)
    assert sum(report.values()) + down == len(m)
    if not down:
        assert set(report) == set(served) and all(report[r] >= n for r, n in served.items()), (report, served)
