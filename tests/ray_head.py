"""A real Ray head for tests: loopback only, its own temp dir and ports, stopped by its PID (never `ray stop`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """`ray start --head --block` on 127.0.0.1; `stop()` ends the process group this object started."""

    def __init__(self, num_cpus: int = 2):
        self.temp_dir = tempfile.mkdtemp(prefix="ecray-", dir="/tmp")  # short: Ray's socket paths are limited
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                    "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}  # jobs' `python` is this venv's
        cmd = [f"{bindir}/ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", f"--port={self.port}", f"--dashboard-port={self.dashboard_port}",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--num-cpus={num_cpus}", "--disable-usage-stats", f"--temp-dir={self.temp_dir}"]
        self.log = open(Path(self.temp_dir) / "head.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited: {(Path(self.temp_dir) / 'head.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError("ray head's dashboard did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # `--block` tears down the node's processes on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.leftover_pids():  # anything of this node that left the process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def leftover_pids(self) -> list[int]:
        """Processes still running that belong to this head (their command line names its temp dir)."""
        import psutil

        out = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any(self.temp_dir in part for part in (p.info["cmdline"] or [])):
                out.append(p.info["pid"])
        return out
