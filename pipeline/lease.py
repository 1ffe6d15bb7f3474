"""OutputLease: one writer per output directory.

A job holds `OUT/.eventcap.lease` (JSON: host, pid, started, token) for as long as it writes. A second job on
the same OUT fails at once with `LeaseHeld`, naming the holder. A lease left by a dead process (same host, PID
gone) or one whose heartbeat stopped (another host, file not touched for `stale_after_s`) is taken over, and
the takeover is recorded in `taken_over` so the job can say so.

Local outputs use an exclusive create (O_EXCL), which is atomic. Object stores have no exclusive create
without conditional puts (the cluster issue): there the check is best-effort (read, then write).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import pyarrow.fs as pafs

from pipeline.sources import filesystem_for

log = logging.getLogger(__name__)

LEASE_NAME = ".eventcap.lease"


class LeaseHeld(RuntimeError):
    """Another live process holds the output."""

    def __init__(self, output: str, holder: dict):
        self.holder = holder
        super().__init__(
            f"{output} is being written by another eventcap job: host {holder.get('host')}, "
            f"PID {holder.get('pid')}, started {holder.get('started')} (lease file {output}/{LEASE_NAME}). "
            "Wait for it to finish, or stop it; a lease left by a dead process is taken over automatically.")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class OutputLease:
    """Context manager: acquire the lease of `output` on enter, release it on exit."""

    def __init__(self, output: str, stale_after_s: float = 120.0, heartbeat_s: float = 30.0):
        self.output = output.rstrip("/")
        self.fs, root = filesystem_for(self.output)
        self.path = f"{root}/{LEASE_NAME}"
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.now(UTC).isoformat(timespec="seconds"), "token": uuid.uuid4().hex}
        self.taken_over: dict | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------------ holder state
    def read_holder(self) -> dict | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # unreadable or half-written: treat as an unknown holder
            return {}

    def _age_s(self) -> float:
        info = self.fs.get_file_info(self.path)
        if info.mtime is None:
            return 0.0
        return time.time() - info.mtime.timestamp()

    def is_stale(self, holder: dict) -> str | None:
        """Why `holder` is no longer alive, or None when it may be."""
        if holder.get("host") == self.record["host"] and isinstance(holder.get("pid"), int):
            return None if pid_alive(holder["pid"]) else f"PID {holder['pid']} on {holder['host']} is not running"
        age = self._age_s()
        if age > self.stale_after_s:
            return f"lease not refreshed for {age:.0f} s (holder host {holder.get('host')})"
        return None

    # ------------------------------------------------------------------ acquire / release
    def _create(self) -> bool:
        data = json.dumps(self.record).encode()
        if not self.local:
            if self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
                return False
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return True
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def _remove_stale(self) -> None:
        if not self.local:
            self.fs.delete_file(self.path)
            return
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)  # only one of several racing takers wins the rename
        except FileNotFoundError:
            return
        os.unlink(aside)

    def check(self) -> None:
        """Raise LeaseHeld when a live job holds the output (a quick look; `acquire` is what claims it)."""
        holder = self.read_holder()
        if holder is not None and self.is_stale(holder) is None:
            raise LeaseHeld(self.output, holder)

    def acquire(self) -> OutputLease:
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return self
            holder = self.read_holder()
            if holder is None:  # released between our create and read: try again
                continue
            why = self.is_stale(holder)
            if why is None:
                raise LeaseHeld(self.output, holder)
            self.taken_over = {**{k: holder.get(k) for k in ("host", "pid", "started")}, "reason": why}
            log.warning("taking over a stale lease on %s: %s", self.output, why)
            self._remove_stale()
        raise LeaseHeld(self.output, self.read_holder() or {})

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        holder = self.read_holder()
        if holder and holder.get("token") == self.record["token"]:
            self.fs.delete_file(self.path)

    def _touch(self) -> None:
        if self.local:
            os.utime(self.path)
            return
        with self.fs.open_output_stream(self.path) as f:  # an object's mtime moves only when it is rewritten
            f.write(json.dumps(self.record).encode())

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    self._touch()
                except OSError:
                    return

        self._beat = threading.Thread(target=beat, name="eventcap-lease", daemon=True)
        self._beat.start()

    def describe(self) -> dict:
        return {"holder": {k: self.record[k] for k in ("host", "pid", "started")}, "taken_over": self.taken_over}

    def __enter__(self) -> OutputLease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
