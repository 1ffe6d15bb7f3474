"""Run a command and watch its whole process tree: peak summed PSS, Ray start, first committed shard.

    res = watch([sys.executable, "-m", "jobs.cli", "annotate", ...], first_file="OUT/shards/*.keys.json")

PSS (proportional set size) splits each shared page among the processes mapping it, so the sum over a tree
counts shared libraries and Ray's shared-memory object store once: it is the memory the job costs the machine.
Read from `/proc/<pid>/smaps_rollup` of the root and every descendant (Ray's GCS, raylet and workers are
children of the driver that called `ray.init()`), every `interval_s`.
"""

from __future__ import annotations

import glob
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])  # the name may hold spaces: fields after ')'
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root: int) -> list[int]:
    kids, out, todo = _children_map(), [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Watched:
    returncode: int
    wall_s: float
    peak_pss_mib: float
    peak_processes: int
    ray_up_s: float | None  # first raylet seen in the tree, seconds after start
    first_file_s: float | None  # first file matching `first_file`, seconds after start
    load_before: list[float]
    load_after: list[float]
    stdout: str = ""
    stderr: str = ""
    samples: int = 0
    pss_by_kind_at_peak: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("stdout", "stderr")}
        d["ttfs_after_ray_s"] = (round(self.first_file_s - self.ray_up_s, 2)
                                 if self.first_file_s is not None and self.ray_up_s is not None else None)
        return d


def _kind(cmd: str) -> str:
    """What a process of the job is: a Ray daemon, the driver, or a Ray worker by its title (`ray::IDLE`,
    `ray::SpeechStage`, `ray::WriteCoordinator`, `ray::MapBatches(Router)`: the actor or the task it runs)."""
    if cmd.startswith("ray::"):
        title = cmd.split()[0].removeprefix("ray::")
        for wrap in ("MapWorker(MapBatches(", "MapWorker("):
            if title.startswith(wrap):  # an actor stage: its class, without Ray Data's wrapper or the method
                title = title.removeprefix(wrap).split(")")[0]
        return f"ray::{title.split('.')[0]}"
    for k in ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env"):
        if k in cmd:
            return "ray_worker" if "default_worker" in cmd else k
    return "ray_worker" if "default_worker.py" in cmd else "driver/other"


def watch(cmd: list[str], first_file: str | None = None, interval_s: float = 0.5, env: dict | None = None,
          cwd: str | None = None, timeout_s: float | None = None) -> Watched:
    """Run `cmd` to completion while sampling its process tree; return what was seen."""
    load_before = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    state = {"peak": 0, "nproc": 0, "ray": None, "first": None, "n": 0, "kinds": {}}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = tree(proc.pid)
            sizes = {p: pss_kib(p) for p in pids}
            total = sum(sizes.values())
            now = time.perf_counter() - t0
            state["n"] += 1
            if total > state["peak"]:
                kinds: dict[str, float] = {}
                for p, s in sizes.items():
                    k = _kind(_cmdline(p))
                    kinds[k] = kinds.get(k, 0.0) + s / 1024
                state.update(peak=total, nproc=len(pids), kinds={k: round(v, 1) for k, v in kinds.items()})
            if state["ray"] is None and any("raylet" in _cmdline(p) for p in pids[1:]):
                state["ray"] = now
            if first_file and state["first"] is None and glob.glob(first_file):
                state["first"] = now
            stop.wait(interval_s)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    r = lambda x: None if x is None else round(x, 2)  # noqa: E731
    return Watched(proc.returncode, round(wall, 2), round(state["peak"] / 1024, 1), state["nproc"], r(state["ray"]),
                   r(state["first"]), load_before, loadavg(), out, err, state["n"], state["kinds"])
