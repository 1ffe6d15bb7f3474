"""Caption mergers over an annotate output: template vs LLM, side by side in one run.

    python -m bench.bench_captions [OUT] [--base-url URL --model NAME | --llama] [--in-flight 1 4] [--json PATH]

Without OUT it builds the `make demo` sample corpus and annotates it (template merger) first; without
--base-url it starts llama-cpp-python's server with SmolLM2-135M-Instruct on 127.0.0.1 (`--llama`) and stops it
by PID after. Prints and writes to JSON (default bench/results/captions_demo.json): five captions of each kind
(template, llm, template_fallback) with the rejection reasons, the number of distinct opening 4-grams of the
template captions, LLM requests per second with each number of requests in flight (no cache), the load
average around each measurement, and the accepted / fallback counts and rejection counts by reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from annotators.llm.merger import PROMPT_ID, LLMCaptionMerger, TemplateMerger, reason_code
from pipeline.ledger import committed_shards
from pipeline.recaption import read_annotations
from pipeline.sources import filesystem_for
from schemas.config import CaptionConfig

RESULTS = Path(__file__).parent / "results"


def opening(caption: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w'-]+", caption.lower())[:4])


def load_segments(out: str):
    fs, root = filesystem_for(out)
    segs = []
    for shard in sorted(committed_shards(out)):
        segs += read_annotations(fs, f"{root}/shards/{shard}.tar")
    return sorted(segs, key=lambda s: (s.source_uri, s.start_s))


def annotate_demo(workdir: Path) -> str:
    """The `make demo` corpus annotated with the template merger; returns the output path."""
    from jobs.demo import build_corpus
    from pipeline.run import run_annotate
    from schemas.config import load_config

    corpus = build_corpus(workdir / "corpus")
    out = workdir / "annotated"
    run_annotate([str(corpus)], str(out), load_config(None, []))
    return str(out)


def row(seg, res) -> dict:
    return {"source": Path(seg.source_uri).name, "start_s": round(seg.start_s, 2), "key": seg.key,
            "caption_source": res.source, "caption": res.caption, "short_caption": res.short_caption,
            "rejections": list(res.rejections)}


def measure(segs, cfg: CaptionConfig, repeat: int) -> tuple[dict, list]:
    """Caption every segment `repeat` times with `cfg.max_in_flight` requests in flight; (numbers, results)."""
    m = LLMCaptionMerger(cfg)
    m.caption_many(segs[-1:])  # detect the dialect and fill the server's prompt-prefix cache outside the timing
    before, load0 = m.endpoint.requests, os.getloadavg()
    t0 = time.time()
    res = []
    for _ in range(repeat):
        res += m.caption_many(segs)
    wall = time.time() - t0
    m.close()
    reqs = m.endpoint.requests - before
    numbers = {"max_in_flight": cfg.max_in_flight, "requests": reqs, "segments": len(res), "wall_s": round(wall, 1),
               "requests_per_s": round(reqs / wall, 3), "captions_per_s": round(len(res) / wall, 3),
               "loadavg_1m_before": round(load0[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
               "response_format": m.endpoint.form}
    return numbers, res


def counts(res) -> dict:
    return {"by_source": dict(Counter(r.source for r in res)),
            "rejections_by_reason": dict(Counter(reason_code(x) for r in res for x in r.rejections)),
            "fallbacks_by_reason": dict(Counter(reason_code(r.rejections[-1]) for r in res
                                                if r.source == "template_fallback" and r.rejections))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", nargs="?", help="an annotate output (default: annotate the demo corpus first)")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--llama", action="store_true", help="start a local llama.cpp server with SmolLM2-135M")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 4], help="max_in_flight settings to time")
    ap.add_argument("--limits", type=int, nargs="+", help="segments per --in-flight setting (0: all; default all)")
    ap.add_argument("--check-retries", type=int, default=CaptionConfig().check_retries)
    ap.add_argument("--repeat", type=int, default=1, help="caption the segments this many times per setting")
    ap.add_argument("--temperature", type=float, default=CaptionConfig().temperature)
    ap.add_argument("--json", default=str(RESULTS / "captions_demo.json"), help="where to write the numbers")
    args = ap.parse_args(argv)

    output = args.output or annotate_demo(Path(tempfile.mkdtemp(prefix="bench-captions-")))
    segs = load_segments(output)
    template = TemplateMerger().caption_many(segs)
    openings = Counter(opening(r.caption) for r in template)
    report: dict = {"output": output, "segments": len(segs), "prompt_id": PROMPT_ID,
                    "template": {"distinct_opening_4grams": len(openings), "captions": len(template),
                                 "most_common_openings": [[" ".join(k), n] for k, n in openings.most_common(3)],
                                 "examples": [row(s, r) for s, r in zip(segs, template, strict=True)][:5]}}
    print(f"{len(segs)} segments\n\n== template captions (first 5)")
    for s, r in list(zip(segs, template, strict=True))[:5]:
        print(f"  [{Path(s.source_uri).name} {s.start_s:.1f}s] {r.caption}\n      short: {r.short_caption}")
    print(f"distinct opening 4-grams: {len(openings)} over {len(template)} captions; most common: "
          f"{openings.most_common(3)}")

    server = None
    if args.llama or not args.base_url:
        try:
            from tests.llm_servers import LlamaServer, smollm2_path
        except ImportError as e:
            print(f"no local LLM server ({e}): template numbers only")
            return _write(args.json, report)
        server = LlamaServer(smollm2_path(), Path(tempfile.mkdtemp()) / "llama.log").start()
        args.base_url, args.model = server.base_url, server.model_alias
        report["server"] = server.describe()
    try:
        report["llm"] = {"base_url": args.base_url, "model": args.model, "temperature": args.temperature,
                         "throughput": [], "runs": {}}
        all_res: list = []
        report["llm"]["check_retries"] = args.check_retries
        limits = args.limits or [0] * len(args.in_flight)
        for n, limit in zip(args.in_flight, limits, strict=True):
            cfg = CaptionConfig(merger="llm", base_url=args.base_url, model=args.model, max_in_flight=n,
                                cache=False, timeout_s=600, temperature=args.temperature,
                                check_retries=args.check_retries)
            run_segs = segs[:limit] if limit else segs
            numbers, res = measure(run_segs, cfg, args.repeat)
            report["llm"]["throughput"].append(numbers)
            report["llm"]["runs"][str(n)] = {**counts(res), "captions": [row(s, r) for s, r in
                                                                           zip(run_segs * args.repeat, res,
                                                                               strict=True)]}
            all_res += [row(s, r) for s, r in zip(run_segs * args.repeat, res, strict=True)]
            print(f"\n== {n} in flight: {numbers['requests']} requests in {numbers['wall_s']} s = "
                  f"{numbers['requests_per_s']} requests/s, {numbers['captions_per_s']} captions/s "
                  f"(load average {numbers['loadavg_1m_before']} -> {numbers['loadavg_1m_after']})")
            print(f"   {counts(res)}")
            _write(args.json, report)  # after every run: a slow endpoint's partial numbers survive an interrupt
        for kind in ("llm", "template_fallback"):
            seen, picked = set(), []
            for r in all_res:  # five distinct segments of each kind, over all runs
                if r["caption_source"] == kind and r["key"] not in seen:
                    seen.add(r["key"])
                    picked.append(r)
            report["llm"][f"five_{kind}"] = picked[:5]
            print(f"\n== {kind} captions (up to 5 segments)")
            for r in picked[:5]:
                print(f"  [{r['source']} {r['start_s']}s] {r['caption']}\n      short: {r['short_caption']}"
                      + (f"\n      rejected: {r['rejections']}" if r["rejections"] else ""))
    finally:
        if server is not None:
            server.stop()
    return _write(args.json, report)


def _write(path: str, report: dict) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
