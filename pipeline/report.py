"""`OUT/report.html`: what an annotate output holds, in one self-contained page (PNG charts inlined as data URIs).

Reads the manifest, the quarantine table and `report.json` through `pyarrow.fs` (local or S3), draws each
chart with matplotlib (Agg) and writes one HTML file with no network asset: it opens offline, from a bucket
or attached to a ticket. A chart with nothing to show says so in words instead of drawing empty axes.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pipeline.ledger import write_atomic
from pipeline.sources import filesystem_for, redact_uri
from schemas.compat import current_column, upgrade_table

MANIFEST_COLUMNS = ["key", "source_uri", "duration_s", "routes", "language", "n_speakers", "events", "tempo_bpm",
                    "music_key", "caption_model", "speech_caption", "music_caption", "general_caption", "shard"]
INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
ROUTE_COLORS = {"speech": "#2563eb", "music": "#d97706", "general": "#059669"}
ACCENT = "#4f46e5"
WARN = "#dc2626"


@dataclass
class Chart:
    title: str
    png: bytes | None  # None: nothing to draw
    note: str = ""  # one line under the chart (or the reason it is empty)


# ------------------------------------------------------------------ reading the output
def read_parquet_dir(output: str, sub: str, columns: list[str] | None = None) -> pa.Table | None:
    fs, root = filesystem_for(output)
    info = fs.get_file_info(pafs.FileSelector(f"{root}/{sub}", allow_not_found=True))
    files = [fi.path for fi in info if fi.type == pafs.FileType.File and fi.base_name.endswith(".parquet")
             and not fi.base_name.startswith(".")]
    if not files:
        return None
    ds = pads.dataset(files, filesystem=fs, format="parquet")
    stored = [c for c in ds.schema.names if columns is None or current_column(c) in columns]
    return upgrade_table(ds.to_table(columns=stored))  # any schema version, current column names


def _read_json(output: str, name: str) -> dict:
    fs, root = filesystem_for(output)
    try:
        with fs.open_input_stream(f"{root}/{name}") as f:
            return json.loads(f.read())
    except (FileNotFoundError, OSError):
        return {}


# ------------------------------------------------------------------ drawing
def _figure(height: float = 2.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.edgecolor": GRID, "axes.labelcolor": MUTED, "xtick.color": MUTED,
                         "ytick.color": MUTED, "axes.titlesize": 10, "font.family": "DejaVu Sans"})
    fig, ax = plt.subplots(figsize=(5.2, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def bar_chart(title: str, counts: dict[str, float], empty: str, xlabel: str = "segments", top: int = 12,
              colors: dict[str, str] | None = None, fmt: str = "{:,.0f}", note: str = "",
              log: bool = False, highlight_min: bool = False) -> Chart:
    """Horizontal bars, largest on top, each labelled with its value. Counts get integer ticks; `log` suits
    values spread over decades; `highlight_min` marks the smallest bar (the bottleneck)."""
    from matplotlib.ticker import MaxNLocator

    items = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: -kv[1])
    if not items:
        return Chart(title, None, empty)
    hidden = len(items) - top
    items = items[:top][::-1]
    fig, ax = _figure(height=0.9 + 0.28 * len(items))
    labels = [_short(str(k)) for k, _ in items]
    values = [v for _, v in items]
    color = [(colors or {}).get(str(k), ACCENT) for k, _ in items]
    if highlight_min:
        color[values.index(min(values))] = WARN
    bars = ax.barh(labels, values, color=color, height=0.62)
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=3, color=INK, fontsize=8)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 6)
    else:
        ax.set_xlim(0, max(values) * 1.18)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    if hidden > 0:
        note = (note + " " if note else "") + f"{hidden} more not shown."
    return Chart(title, _png(fig), note)


def histogram(title: str, values: list[float], empty: str, xlabel: str, bins: int = 20, note: str = "") -> Chart:
    values = [v for v in values if v is not None]
    if not values:
        return Chart(title, None, empty)
    fig, ax = _figure()
    ax.hist(values, bins=bins, color=ACCENT, edgecolor="white", linewidth=0.6)
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("segments")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return Chart(title, _png(fig), note)


# ------------------------------------------------------------------ the charts
def charts(manifest: pa.Table | None, quarantine: pa.Table | None, report: dict) -> list[Chart]:
    rows = manifest.to_pylist() if manifest is not None else []
    none = "No segments in the output yet."
    durations = [r["duration_s"] for r in rows]
    out = [histogram("Segment duration", durations, none, "seconds",
                     note=f"median {sorted(durations)[len(durations) // 2]:.1f} s" if durations else "")]

    routes = Counter(" + ".join(r["routes"]) if r["routes"] else "(none)" for r in rows)
    out.append(bar_chart("Route composition", routes, none, colors=ROUTE_COLORS,
                         note="Segments by the set of branches they were routed to (multi-label)."))

    speech = [r for r in rows if "speech" in (r["routes"] or [])]
    out.append(bar_chart("Languages", Counter(r["language"] or "unknown" for r in speech),
                         "No speech segments.", xlabel="speech segments"))
    out.append(bar_chart("Speakers per segment", Counter(f"{r['n_speakers']} speaker"
                                                         + ("s" if r["n_speakers"] != 1 else "")
                                                         for r in speech if r["n_speakers"] is not None),
                         "No speech segments.", xlabel="speech segments"))

    events = Counter(e["label"] for r in rows for e in (r["events"] or []))
    out.append(bar_chart("Top sound events", events, "No sound events detected.", xlabel="events"))

    music = [r for r in rows if r["tempo_bpm"] is not None or r["music_key"]]
    out.append(histogram("Tempo", [r["tempo_bpm"] for r in music], "No music segments with a tempo.", "BPM",
                         bins=16))
    out.append(bar_chart("Key", Counter(r["music_key"] for r in music if r["music_key"]),
                         "No music segments with a key.", xlabel="music segments"))

    sources = Counter()
    for r in rows:
        sources[f"unified: {r['caption_model'] or 'none'}"] += 1
        for branch in ("speech", "music", "general"):
            if r[f"{branch}_caption"]:
                sources[f"{branch} caption"] += 1
    out.append(bar_chart("Caption sources", sources, none,
                         note="Which merger wrote the unified caption, and how many branch captions exist."))

    reasons = Counter(quarantine.column("error").to_pylist()) if quarantine is not None else Counter()
    out.append(bar_chart("Quarantine reasons", reasons, "Nothing was quarantined.", xlabel="inputs"))

    audio_s = (report.get("segments") or {}).get("audio_s") or sum(durations)
    speed = {stage: audio_s / s["seconds"] for stage, s in (report.get("stages") or {}).items()
             if s.get("seconds") and audio_s}
    out.append(bar_chart("Per-stage throughput", speed, "No stage timings in report.json.",
                         xlabel="audio seconds per busy second (log scale)", fmt="{:,.1f}", top=16, log=True,
                         highlight_min=True,
                         note="Audio in the last run divided by the time each stage was busy, summed over its "
                              "actors. The red bar is the slowest stage: the one to give more actors or GPUs."))
    return out


# ------------------------------------------------------------------ the page
CSS = """
body{font-family:"DejaVu Sans",system-ui,sans-serif;color:#1f2937;background:#f3f4f6;margin:0}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:24px;margin:0 0 4px} .sub{color:#6b7280;font-size:13px;margin-bottom:20px;word-break:break-all}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:22px}
.stat{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.stat b{display:block;font-size:22px;color:#111827} .stat span{font-size:12px;color:#6b7280}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card h2{font-size:15px;margin:0 0 8px} .card img{width:100%;height:auto;display:block}
.note{color:#6b7280;font-size:12px;margin-top:6px} .empty{color:#9ca3af;font-style:italic;padding:28px 0}
footer{color:#9ca3af;font-size:12px;margin-top:24px}
"""


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def render_html(output: str, manifest: pa.Table | None, quarantine: pa.Table | None, report: dict) -> str:
    n = manifest.num_rows if manifest is not None else 0
    audio = sum(manifest.column("duration_s").to_pylist()) if n else 0.0
    sources = len(set(manifest.column("source_uri").to_pylist())) if n else 0
    shards = len(set(manifest.column("shard").to_pylist())) if n else 0
    job = report.get("job") or {}
    stats = [(f"{n:,}", "segments"), (_duration(audio), "of audio"), (f"{sources:,}", "sources with segments"),
             (f"{shards:,}", "shards"), (f"{quarantine.num_rows if quarantine is not None else 0:,}", "quarantined"),
             (f"{(report.get('throughput') or {}).get('audio_s_per_wall_s') or '–'}", "audio-s per s (last run)")]
    cards = []
    for c in charts(manifest, quarantine, report):
        body = (f'<img alt="{html.escape(c.title)}" src="data:image/png;base64,{base64.b64encode(c.png).decode()}">'
                if c.png else f'<div class="empty">{html.escape(c.note)}</div>')
        note = f'<div class="note">{html.escape(c.note)}</div>' if c.png and c.note else ""
        cards.append(f'<section class="card"><h2>{html.escape(c.title)}</h2>{body}{note}</section>')
    stat_html = "".join(f'<div class="stat"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
                        for v, k in stats)
    meta = " · ".join(x for x in (html.escape(redact_uri(output)), f"config {job.get('config_hash', '–')}",
                                  f"schema {job.get('schema_version', '–')}",
                                  f"last run finished {job.get('finished', '–')}") if x)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>eventcap report</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f'<body><main><h1>eventcap annotation report</h1><div class="sub">{meta}</div>'
            f'<div class="stats">{stat_html}</div><div class="grid">{"".join(cards)}</div>'
            f'<footer>Generated by <code>eventcap report</code> from manifest/, quarantine/ and report.json.'
            f'</footer></main></body></html>')


def write_report(output: str) -> str:
    """Write `OUT/report.html` for an annotate output; returns its path."""
    output = output.rstrip("/")
    manifest = read_parquet_dir(output, "manifest", MANIFEST_COLUMNS)
    quarantine = read_parquet_dir(output, "quarantine", ["source_uri", "stage", "error", "key"])
    if quarantine is not None:  # resumed runs may write the same rejection twice
        seen = {}
        for q in quarantine.to_pylist():
            seen.setdefault((q["source_uri"], q["stage"], q["error"], q["key"]), q)
        quarantine = pa.Table.from_pylist(list(seen.values()))
    page = render_html(output, manifest, quarantine, _read_json(output, "report.json"))
    fs, root = filesystem_for(output)
    write_atomic(fs, f"{root}/report.html", page.encode())
    return f"{output}/report.html"
