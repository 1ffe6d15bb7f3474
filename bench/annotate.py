"""Issue 20's throughput benchmark: the annotate job against its own parts, side by side in one run.

    python -m bench.annotate [--size 1.0] [--out bench/results/annotate.json] [--skip-unit]

On the fixed corpus of bench/corpus.py (~11 min of speech, music, effects and scenes; `--size 0.3` takes a
stratified share of its files for a ~2-minute iteration), each as a whole process, its process tree's summed
PSS sampled every 0.5 s (bench/procmem.py):

1. `faster-whisper + VAD alone`: BatchedInferencePipeline with the speech branch's model and settings;
2. `plain loop`: the same annotators in a sequential Python loop, with each stage's time alone and a per-model
   profile (bench/plain_loop.py);
3. `pipeline`: `eventcap annotate` (python -m jobs.cli annotate), Ray started by the job itself;
4. `pipeline 1/3`: the same on every third file (the "1x" of a 1x/3x pair): marginal throughput between the
   two is the steady state, the rest of the 1/3 run's wall time is the fixed cost (Ray start, model loads).

Throughput is audio-seconds of the corpus per wall-second of the whole process. The load average before and
after each run is recorded: other processes share these cores, so compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.corpus import Corpus, build_corpus
from bench.procmem import Watched, loadavg, watch

ROOT = Path(__file__).resolve().parent.parent
ENV = {"NUMBA_CPU_NAME": "generic", "HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "0",
       "RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1"}
# Every pipeline run starts its own local Ray (never joins another's) and commits small shards (the writer
# waits for about a shard's worth of rows: small shards show when segments reach it); the job's report.json
# gives the time to first segment itself (the first segment out of the last stage).
PIPELINE_SETS = ["ray_address=local", "shards.target_shard_mb=0.25"]


def env() -> dict[str, str]:
    return {**os.environ, **ENV}


def run_module(module: str, args: list[str], first_file: str | None = None) -> tuple[Watched, dict]:
    w = watch([sys.executable, "-m", module, *args], first_file=first_file, env=env(), cwd=str(ROOT))
    if w.returncode != 0:
        raise RuntimeError(f"{module} failed ({w.returncode}):\n{w.stderr[-4000:]}")
    last = [line for line in w.stdout.splitlines() if line.startswith("{")]
    return w, (json.loads(last[-1]) if last else {})


def run_pipeline(corpus: Corpus, workdir: Path, name: str, extra_sets: list[str] | None = None) -> dict:
    out = workdir / name
    sets = [a for s in PIPELINE_SETS + (extra_sets or []) for a in ("--set", s)]
    w, _ = run_module("jobs.cli", ["annotate", *map(str, corpus.files), "-o", str(out), "--no-progress", *sets],
                      first_file=str(out / "shards" / "*.keys.json"))
    rep = json.loads((out / "report.json").read_text())
    stages = {k: round(v["seconds"], 2) for k, v in rep["stages"].items()}
    return {**w.as_dict(), "audio_s": corpus.audio_s, "segments": rep["segments"]["written"],
            "segment_audio_s": rep["segments"]["audio_s"], "job_wall_s": rep["job"]["wall_s"],
            "stage_seconds_summed_over_actors": stages, "routes": rep["segments"]["by_route"],
            "quarantined": rep["quarantined"]["count"], "speed": round(corpus.audio_s / w.wall_s, 3),
            # from the job's own report: seconds after Ray was up until the first segment left the last stage
            # (time_to_first_segment_s) and until the first one reached a write task; and when each stage
            # put out its first row
            "job_time_to_first_segment_s": rep["throughput"].get("time_to_first_segment_s"),
            "job_time_to_first_write_s": rep["throughput"].get("time_to_first_write_s"),
            "job_ray_up_s": rep["throughput"].get("ray_up_s"),
            "stage_first_output_s": {k: v.get("first_output_s") for k, v in rep["stages"].items()}}


def _speed(audio_s: float, wall_s: float) -> float:
    return round(audio_s / wall_s, 3) if wall_s > 0 else float("nan")


def measure(corpus: Corpus, workdir: Path, unit: bool = True) -> dict:
    files = list(map(str, corpus.files))
    res: dict = {"corpus": {"files": len(files), "audio_s": corpus.audio_s,
                            "kinds": sorted(set(corpus.kinds.values()))},
                 "machine": {"cpus": os.cpu_count(), "load_at_start": loadavg()}}
    print(f"corpus: {len(files)} files, {corpus.audio_s:.1f} s of audio; load {loadavg()}", flush=True)

    w, fw = run_module("bench.fw_alone", files)
    res["fw_alone"] = {**w.as_dict(), **fw, "speed": _speed(corpus.audio_s, w.wall_s)}
    print(f"  faster-whisper + VAD alone: {w.wall_s:.1f} s", flush=True)

    w, loop = run_module("bench.plain_loop", files)
    res["plain_loop"] = {**w.as_dict(), **loop, "speed": _speed(corpus.audio_s, w.wall_s)}
    print(f"  plain loop:                 {w.wall_s:.1f} s", flush=True)

    res["pipeline"] = run_pipeline(corpus, workdir, "full")
    print(f"  pipeline:                   {res['pipeline']['wall_s']:.1f} s", flush=True)
    if unit:
        u = corpus.unit()
        res["pipeline_unit"] = run_pipeline(u, workdir, "unit")
        print(f"  pipeline on 1/3:            {res['pipeline_unit']['wall_s']:.1f} s", flush=True)
    res["machine"]["load_at_end"] = loadavg()
    res["figures"] = figures(res)
    return res


def figures(res: dict) -> dict:
    a = res["corpus"]["audio_s"]
    pipe, fw, loop = res["pipeline"], res["fw_alone"], res["plain_loop"]
    f: dict = {
        "pipeline_audio_s_per_s": pipe["speed"], "fw_alone_audio_s_per_s": fw["speed"],
        "plain_loop_audio_s_per_s": loop["speed"],
        "ratio_pipeline_vs_fw_alone": round(pipe["speed"] / fw["speed"], 3),
        "ratio_pipeline_vs_plain_loop": round(pipe["speed"] / loop["speed"], 3),
        "peak_pss_mib": {"pipeline": pipe["peak_pss_mib"], "plain_loop": loop["peak_pss_mib"],
                         "fw_alone": fw["peak_pss_mib"]},
        "time_to_first_segment_after_ray_s": pipe["job_time_to_first_segment_s"],
        "time_to_first_committed_shard_after_ray_s": pipe["ttfs_after_ray_s"],
        "stage_first_output_after_ray_s": pipe["stage_first_output_s"],
        "ray_up_s": pipe["ray_up_s"],
        "stage_alone_audio_s_per_s": {k: _speed(a, v) for k, v in loop["stage_s"].items() if v > 0.05},
        "stage_alone_s": loop["stage_s"],
        "model_profile_s": loop["models_s"],
        "model_load_s": loop["load_s"],
    }
    if "pipeline_unit" in res:
        u = res["pipeline_unit"]
        da, dt = a - u["audio_s"], pipe["wall_s"] - u["wall_s"]
        marginal = da / dt if dt > 0 else float("nan")
        f.update(marginal_audio_s_per_s=round(marginal, 3), audio_ratio_full_vs_unit=round(a / u["audio_s"], 2),
                 fixed_cost_s=round(u["wall_s"] - u["audio_s"] / marginal, 2) if dt > 0 else None,
                 ratio_marginal_vs_fw_alone=round(marginal / fw["speed"], 3))
    return f


def print_figures(res: dict) -> None:
    f = res["figures"]
    print(f"\n== bench/annotate: {res['corpus']['audio_s']:.0f} s of audio, {res['machine']['cpus']} cores, "
          f"load {res['machine']['load_at_start']} -> {res['machine']['load_at_end']}")
    print(f"{'what':44s} {'wall s':>8s} {'audio-s/s':>10s} {'peak PSS MiB':>13s}  load before")
    for key, label in [("fw_alone", "faster-whisper + VAD alone (process)"), ("plain_loop", "plain sequential loop"),
                       ("pipeline", "eventcap annotate (process)"), ("pipeline_unit", "eventcap annotate, 1/3 corpus")]:
        if key in res:
            r = res[key]
            print(f"{label:44s} {r['wall_s']:8.1f} {_speed(r.get('audio_s', 0) or res['corpus']['audio_s'], r['wall_s']):10.2f}"
                  f" {r['peak_pss_mib']:13.0f}  {r['load_before']}")
    print(f"ratio pipeline / faster-whisper alone:  {f['ratio_pipeline_vs_fw_alone']:.2f}   (target >= 0.9)")
    print(f"ratio pipeline / plain loop:            {f['ratio_pipeline_vs_plain_loop']:.2f}   (target >= 1.7)")
    if "marginal_audio_s_per_s" in f:
        print(f"steady state (marginal 1/3 -> 1):       {f['marginal_audio_s_per_s']:.2f} audio-s/s "
              f"= {f['ratio_marginal_vs_fw_alone']:.2f}x fw alone; fixed cost {f['fixed_cost_s']} s")
    print(f"time to first segment after Ray is up:  {f['time_to_first_segment_after_ray_s']} s   (target < 10; "
          f"first committed shard {f['time_to_first_committed_shard_after_ray_s']} s)")
    print("first output of each stage after Ray is up (s):", json.dumps(f["stage_first_output_after_ray_s"]))
    print("each stage alone (plain loop, audio-s of the corpus per s):")
    for k, v in f["stage_alone_audio_s_per_s"].items():
        print(f"  {k:12s} {f['stage_alone_s'][k]:7.1f} s  {v:8.1f}")
    print("per-model profile (plain loop, seconds; '(all)' rows include the rows under them):")
    for k, v in f["model_profile_s"].items():
        print(f"  {k:44s} {v:7.1f}")
    print("model loads (s):", json.dumps(f["model_load_s"]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=float, default=1.0, help="share of the corpus files (stratified); 1 = all")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "annotate.json"))
    ap.add_argument("--skip-unit", action="store_true", help="no 1/3 run (no steady-state figure)")
    args = ap.parse_args()
    corpus = build_corpus().fraction(args.size)
    work = Path(tempfile.mkdtemp(prefix="eventcap-bench-"))
    t0 = time.time()
    try:
        res = measure(corpus, work, unit=not args.skip_unit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["bench_wall_s"] = round(time.time() - t0, 1)
    res["size"] = args.size
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print_figures(res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
