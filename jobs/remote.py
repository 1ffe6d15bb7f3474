"""Run eventcap commands on a Ray cluster through the Ray Jobs API: submit, status, logs, stop.

`eventcap submit --address http://HEAD:8265 [--wait] annotate INPUT... --output OUT [--config job.yaml]`
ships the package (its source directories), the lock file and any `--config FILE` in the job's
`runtime_env` working_dir, and runs the same command on the cluster. Before the command starts, the job
checks that the cluster's installed versions are the lock's (`jobs.lockcheck`), so a job never runs on a
node set up from other versions. Secrets (AWS keys, tokens) are never put into the runtime_env: the Jobs
API shows it to anyone who can read the dashboard; nodes get credentials from their instance role.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("pipeline", "stages", "annotators", "schemas", "jobs", "trainer")
SHIPPED_FILES = ("pyproject.toml", "requirements.lock")
CONFIG_DIR = "submitted"
DEFAULT_ADDRESS = "http://127.0.0.1:8265"  # the head's dashboard through `ray dashboard ray_cluster.yaml`
FORWARDED_ENV = ("HF_HUB_OFFLINE", "PYANNOTE_METRICS_ENABLED", "EVENTCAP_CACHE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")  # never keys or tokens
EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}


def _client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS)


class JobPackage:
    """A staging directory holding what the job needs: the package's source, the lock and its config files."""

    def __init__(self, command: list[str], lock: Path | None):
        self.dir = Path(tempfile.mkdtemp(prefix="eventcap-submit-"))
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
        for name in PACKAGE_DIRS:
            if (PACKAGE_ROOT / name).is_dir():
                shutil.copytree(PACKAGE_ROOT / name, self.dir / name, ignore=ignore)
        for name in SHIPPED_FILES:
            if (PACKAGE_ROOT / name).is_file():
                shutil.copy2(PACKAGE_ROOT / name, self.dir / name)
        self.lock = None
        if lock is not None:
            shutil.copy2(lock, self.dir / "requirements.lock")
            self.lock = "requirements.lock"
        elif (self.dir / "requirements.lock").is_file():
            self.lock = "requirements.lock"
        self.command = self._ship_configs(command)

    def _ship_configs(self, command: list[str]) -> list[str]:
        """`--config FILE` (or `-c FILE`, `--config=FILE`) naming a local file travels with the job."""
        out, args = [], iter(command)
        for arg in args:
            if arg in ("--config", "-c"):
                value = next(args, None)
            elif arg.startswith("--config="):
                value = arg.split("=", 1)[1]
            else:
                out.append(arg)
                continue
            out += [arg] if value is None else ["--config", self._ship(value)]
        return out

    def _ship(self, path: str) -> str:
        """Copy a local config file into the package; the job reads it from the working dir."""
        if not Path(path).is_file():
            return path  # a path on the cluster, or a name: passed as it is
        (self.dir / CONFIG_DIR).mkdir(exist_ok=True)
        dest = f"{CONFIG_DIR}/{len(list((self.dir / CONFIG_DIR).iterdir()))}-{Path(path).name}"
        shutil.copy2(path, self.dir / dest)
        return dest

    def entrypoint(self) -> str:
        run = "python -m jobs.cli " + shlex.join(self.command)
        return f"python -m jobs.lockcheck {self.lock} && {run}" if self.lock else run

    def runtime_env(self) -> dict:
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        env.setdefault("PYANNOTE_METRICS_ENABLED", "0")
        return {"working_dir": str(self.dir), "env_vars": env}

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def submit(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("eventcap submit: give the eventcap command to run, e.g. `annotate IN --output OUT`", file=sys.stderr)
        return 2
    if command[0] in ("submit", "status", "logs", "stop"):
        print(f"eventcap submit: `{command[0]}` runs on your machine, not as a job", file=sys.stderr)
        return 2
    pkg = JobPackage(command, Path(args.lock) if args.lock else None)
    if pkg.lock is None and not args.no_lock_check:
        print("eventcap submit: no requirements.lock to check the cluster against (pass --lock FILE or "
              "--no-lock-check)", file=sys.stderr)
        pkg.cleanup()
        return 2
    if args.no_lock_check:
        pkg.lock = None
    try:
        client = _client(args.address)
        job_id = client.submit_job(
            entrypoint=pkg.entrypoint(), runtime_env=pkg.runtime_env(),
            submission_id=args.job_id or f"eventcap-{command[0]}-{time.strftime('%Y%m%d-%H%M%S')}-"
                                         f"{uuid.uuid4().hex[:6]}",
            entrypoint_num_cpus=0, metadata={"eventcap_command": command[0]})
    finally:
        pkg.cleanup()  # uploaded by submit_job
    print(job_id, flush=True)
    if not args.wait:
        return 0
    return _follow(client, job_id)


def _follow(client, job_id: str) -> int:
    """Print the job's log as it grows; return the exit status its final state stands for."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())
    status = _wait_terminal(client, job_id)
    info = client.get_job_info(job_id)
    print(f"job {job_id}: {status}" + (f" ({info.message})" if status != "SUCCEEDED" and info.message else ""),
          file=sys.stderr)
    return EXIT.get(status, 1)


def _wait_terminal(client, job_id: str, timeout_s: float = 120) -> str:
    deadline = time.time() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in EXIT or time.time() > deadline:
            return status
        time.sleep(0.5)


def status(args: argparse.Namespace) -> int:
    client = _client(args.address)
    if args.job_id:
        info = client.get_job_info(args.job_id)
        print(f"{info.submission_id}\t{info.status.value}\t{info.message or ''}")
        return 0
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
    for j in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(j.start_time / 1000)) if j.start_time else "-"
        print(f"{j.submission_id or j.job_id}\t{j.status.value}\t{started}\t{_command_of(j.entrypoint)}")
    if not jobs:
        print("no jobs")
    return 0


def _command_of(entrypoint: str) -> str:
    return entrypoint.split("python -m jobs.cli ", 1)[-1]


def logs(args: argparse.Namespace) -> int:
    client = _client(args.address)
    if args.follow:
        return _follow(client, args.job_id)
    sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def stop(args: argparse.Namespace) -> int:
    client = _client(args.address)
    if not client.stop_job(args.job_id):
        print(f"job {args.job_id} had already finished: {client.get_job_status(args.job_id).value}")
        return 0
    final = _wait_terminal(client, args.job_id, timeout_s=60)
    print(f"job {args.job_id}: {final}")
    return 0 if final in EXIT else 1


def add_remote_commands(sub) -> None:
    """The submit/status/logs/stop subcommands of `eventcap`."""
    addr = dict(default=None, help=f"the head's dashboard (default: $RAY_ADDRESS or {DEFAULT_ADDRESS})")
    s = sub.add_parser("submit", help="run an eventcap command as a job on a Ray cluster",
                       usage="eventcap submit --address http://HEAD:8265 [--wait] COMMAND ARGS...")
    s.add_argument("--address", **addr)
    s.add_argument("--wait", action="store_true", help="follow the logs; exit with the job's status")
    s.add_argument("--job-id", help="submission id (default: eventcap-COMMAND-TIME-RANDOM)")
    s.add_argument("--lock", help="lock file the cluster must match (default: the package's requirements.lock)")
    s.add_argument("--no-lock-check", action="store_true", help="run without comparing versions to the lock")
    s.add_argument("command", nargs=argparse.REMAINDER, help="the eventcap command, as you would run it locally")
    s.set_defaults(func=submit)

    st = sub.add_parser("status", help="one job's status, or every job of the cluster")
    st.add_argument("job_id", nargs="?", metavar="JOB_ID")
    st.add_argument("--address", **addr)
    st.set_defaults(func=status)

    lg = sub.add_parser("logs", help="a job's driver log")
    lg.add_argument("job_id", metavar="JOB_ID")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    lg.add_argument("--address", **addr)
    lg.set_defaults(func=logs)

    sp = sub.add_parser("stop", help="stop a running job")
    sp.add_argument("job_id", metavar="JOB_ID")
    sp.add_argument("--address", **addr)
    sp.set_defaults(func=stop)
