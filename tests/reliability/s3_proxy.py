"""A fault-injecting HTTP proxy in front of an S3 server (moto) on 127.0.0.1: the first uploads of shard tars
are answered `503 SlowDown`, and one upload loses its connection half-way through its body."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # answers `Expect: 100-continue` before the body comes
    server: FaultyS3Proxy

    def log_message(self, *args) -> None:
        pass

    def _body(self, limit: int | None = None) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n if limit is None else min(n, limit))

    def _fault(self) -> str | None:
        if self.command != "PUT" or not self.path.split("?")[0].endswith(".tar"):
            return None
        with self.server.lock:
            self.server.tar_puts += 1
            n = self.server.tar_puts
        if n <= self.server.slowdowns:
            return "slowdown"
        if n == self.server.slowdowns + 1:
            return "drop"
        return None

    def _proxy(self) -> None:
        fault = self._fault()
        if fault == "drop":  # half the body arrives, then the connection is gone
            self._body(limit=int(self.headers.get("Content-Length") or 0) // 2)
            self.server.count("drop")
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body = self._body()
        if fault == "slowdown":
            self.server.count("slowdown")
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            self.wfile.write(SLOWDOWN)
            return
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        up.request(self.command, self.path, body=body or None, headers=headers)
        r = up.getresponse()
        data = r.read()
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)  # a HEAD's Content-Length is the object's size
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        up.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy  # noqa: N815


class FaultyS3Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, slowdowns: int = 2):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream)
        self.slowdowns = slowdowns
        self.tar_puts = 0
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def count(self, fault: str) -> None:
        with self.lock:
            self.faults[fault] = self.faults.get(fault, 0) + 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # a dropped connection is the point

    def __enter__(self) -> FaultyS3Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
