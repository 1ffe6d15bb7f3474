"""`SFT_OUT/README.md`: the dataset card of an `eventcap sft` output (see pipeline/dataset_card.py for why).

The YAML header declares one config, the samples as written: `shards/*.tar` (WebDataset: `json` typed from
`schemas.sft.RECORD_SCHEMA`, plus `flac` with --embed-audio) or, for `--format moss-jsonl`, `train.jsonl`.
`datasets` picks one builder per directory, so the Parquet index is not a second config; Parquet carries its
own types (`load_dataset("parquet", data_files="SFT_OUT/index/*.parquet")`), the ones `INDEX_SCHEMA` declares.
The card depends only on the config and the report, so two runs on the same inputs write the same bytes.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.dataset_card import hf_feature, render_card, schema_features
from schemas.sft import MOSS_LINE_SCHEMA, RECORD_SCHEMA
from schemas.sft_config import SftConfig
from schemas.version import SCHEMA_VERSION

CONFIG = "samples"


def sample_features(cfg: SftConfig) -> list[dict]:
    """The columns of the card's config: what `datasets.load_dataset(SFT_OUT)` returns."""
    if cfg.format == "moss-jsonl":
        return schema_features(MOSS_LINE_SCHEMA)
    cols = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    if cfg.embed_audio:
        cols.append({"name": "flac", "dtype": {"audio": {"sampling_rate": 16000}}})
    return cols + [hf_feature("json", pa.struct(list(RECORD_SCHEMA)))]


def card_header(cfg: SftConfig) -> dict:
    files = "train.jsonl" if cfg.format == "moss-jsonl" else "shards/*.tar"
    return {
        "pretty_name": "eventcap SFT samples",
        "tags": ["audio", "eventcap", "sft", "webdataset" if cfg.format == "webdataset" else "jsonl"],
        "configs": [{"config_name": CONFIG, "default": True, "data_files": [{"split": "train", "path": files}]}],
        "dataset_info": [{"config_name": CONFIG, "features": sample_features(cfg)}],
    }


BODY = """
# eventcap SFT samples

Written by `eventcap sft` (schema {schema}, seed {seed}) from {inputs} annotate output(s): {total:,} samples from
{segments:,} segments, in {shards:,} shards. Per task: {per_task}.

| files | one row per |
|---|---|
{files}| `index/*.parquet` | sample: task, prompt, answer, thinking, `source_fields`, lineage (no audio) |
| `report.json` | the run: samples per task, skipped candidates per reason, prompt variants |

`source_fields` is a JSON string (its keys vary per task): the annotation fields, with their values, the
answer was derived from; `json.loads` it. `thinking` is null unless the sample is a Thinking sample.

```python
from datasets import load_dataset
samples = load_dataset("SFT_OUT", split="train")  # typed from this card
index = load_dataset("parquet", data_files="SFT_OUT/index/*.parquet", split="train")  # Parquet has its types
{wds}```

```sql
-- duckdb
SELECT task, count(*) FROM 'SFT_OUT/index/*.parquet' GROUP BY task;
SELECT sample_id, json_extract(source_fields, '$."speech.words"') FROM 'SFT_OUT/index/*.parquet' WHERE task = 'asr_ts';
```

Lineage: every sample carries `key`, `audio_ref` (the annotate shard and key holding its audio),
`source_uri`, `start_s`/`end_s`, the annotate job's `config_hash` and the `seed`. The licence of the audio
is that of its sources.
"""

WDS_FILES = ("| `shards/*.tar` (config `samples`, WebDataset) | sample: `json` (prompt, answer, thinking, messages, source_fields, lineage){audio} |\n")
MOSS_FILES = ("| `train.jsonl` (config `samples`) | sample: `conversation` [{role, message_type, content}] |\n"
              "| `audio/<key>.wav` | segment: 16 kHz mono WAV the conversations point at |\n")
WDS_READ = """
import glob, json, webdataset as wds
for s in wds.WebDataset(sorted(glob.glob("SFT_OUT/shards/shard-*.tar")), shardshuffle=False):
    rec = json.loads(s["json"]); rec["messages"], json.loads(rec["source_fields"])
"""


def card_text(cfg: SftConfig, report: dict) -> str:
    moss = cfg.format == "moss-jsonl"
    files = MOSS_FILES if moss else WDS_FILES.format(audio=", `flac` (the segment, 16 kHz)" if cfg.embed_audio else "")
    per_task = ", ".join(f"{t} {n:,}" for t, n in sorted(report["samples"].items())) or "none"
    body = BODY.format(schema=SCHEMA_VERSION, seed=cfg.seed, inputs=len(report["inputs"]),
                       total=report["total_samples"], segments=report["segments"]["used"], shards=report["shards"],
                       per_task=per_task, files=files, wds="" if moss else WDS_READ)
    return render_card(card_header(cfg), body)
