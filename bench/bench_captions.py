"""Caption mergers over an annotate output: template vs LLM, side by side in one run.

    python -m bench.bench_captions OUT [--base-url URL --model NAME | --llama] [--repeat 2]

Prints: five captions of each kind (template, llm, template_fallback), the number of distinct opening
4-grams of the template captions, LLM requests per second with 1 and 4 requests in flight (no cache), and
the rejection counts by reason. `--llama` starts llama-cpp-python's server with SmolLM2-135M-Instruct on
127.0.0.1 for the run and stops it after.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from annotators.llm.merger import LLMCaptionMerger, TemplateMerger, reason_code
from pipeline.ledger import committed_shards
from pipeline.recaption import read_annotations
from pipeline.sources import filesystem_for
from schemas.config import CaptionConfig


def opening(caption: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w'-]+", caption.lower())[:4])


def load_segments(out: str):
    fs, root = filesystem_for(out)
    segs = []
    for shard in sorted(committed_shards(out)):
        segs += read_annotations(fs, f"{root}/shards/{shard}.tar")
    return segs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--llama", action="store_true", help="start a local llama.cpp server with SmolLM2-135M")
    ap.add_argument("--repeat", type=int, default=1, help="caption the segments this many times per setting")
    args = ap.parse_args(argv)

    segs = load_segments(args.output)
    template = TemplateMerger().caption_many(segs)
    print(f"{len(segs)} segments")
    print("\n== template captions (first 5)")
    for s, r in list(zip(segs, template, strict=True))[:5]:
        print(f"  [{Path(s.source_uri).name} {s.start_s:.1f}s] {r.caption}\n      short: {r.short_caption}")
    openings = Counter(opening(r.caption) for r in template)
    print(f"distinct opening 4-grams: {len(openings)} over {len(template)} captions; most common: "
          f"{openings.most_common(3)}")

    server = None
    if args.llama:
        from tests.llm_servers import LlamaServer, smollm2_path

        server = LlamaServer(smollm2_path(), Path(tempfile.mkdtemp()) / "llama.log").start()
        args.base_url, args.model = server.base_url, server.model_alias
    if not args.base_url:
        return 0
    try:
        results = {}
        for n in (1, 4):
            cfg = CaptionConfig(merger="llm", base_url=args.base_url, model=args.model, max_in_flight=n,
                                cache=False, timeout_s=120)
            m = LLMCaptionMerger(cfg)
            m.caption_many(segs[:1])  # detect the dialect outside the timing
            before = m.endpoint.requests
            t0 = time.time()
            res = []
            for _ in range(args.repeat):
                res += m.caption_many(segs)
            wall = time.time() - t0
            m.close()
            reqs = m.endpoint.requests - before
            print(f"\n== {n} in flight: {reqs} requests in {wall:.1f} s = {reqs / wall:.2f} requests/s, "
                  f"{len(res) / wall:.2f} captions/s")
            results[n] = res
        res = results[4]
        by_source = Counter(r.source for r in res)
        print(f"caption sources: {dict(by_source)}")
        print(f"rejections by reason: {dict(Counter(reason_code(x) for r in res for x in r.rejections))}")
        print(f"fallbacks by reason: {dict(Counter(reason_code(r.rejections[-1]) for r in res if r.source == 'template_fallback'))}")
        for kind in ("llm", "template_fallback"):
            print(f"\n== {kind} captions (first 5)")
            for s, r in [(s, r) for s, r in zip(segs * args.repeat, res, strict=True) if r.source == kind][:5]:
                print(f"  [{Path(s.source_uri).name} {s.start_s:.1f}s] {r.caption}\n      short: {r.short_caption}"
                      + (f"\n      rejected: {r.rejections}" if r.rejections else ""))
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
