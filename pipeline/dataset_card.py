"""`OUT/README.md`: a Hugging Face dataset card whose YAML header declares the output's configs and features.

`datasets` infers column types from the first rows it reads; a nested field that is null in those rows
(`speech` on non-speech segments) is typed `null` and the load fails when a struct arrives. Declaring the
features (`dataset_info.features`) fixes every column's type up front, so `datasets.load_dataset(OUT)` reads
the shards (config `shards`, WebDataset) with typed columns, and the directory can be pushed to the Hub as
it is. `datasets` 5.x picks one builder for all configs of a directory (from the first config's files), so
the Parquet manifest cannot be a second config next to the WebDataset shards; it needs no card: Parquet
carries its schema (`load_dataset("parquet", data_files="OUT/manifest/*.parquet")` is typed as written).

The shard JSON's types come from the pydantic model (`SegmentAnnotation`), the manifest's from its Arrow
schema, so the card follows the schemas when they change. `models` is a mapping whose keys are the stages
that ran; the card lists the stages present in the output.
"""

from __future__ import annotations

import json
import types
import typing

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel

from pipeline.ledger import write_atomic
from pipeline.report import read_parquet_dir
from pipeline.sources import filesystem_for
from schemas.annotation import ModelInfo, SegmentAnnotation
from schemas.tables import MANIFEST_SCHEMA
from schemas.version import SCHEMA_VERSION

_SCALARS = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}


# ------------------------------------------------------------------ types
def arrow_type(annotation, mapping_keys: dict[type, list[str]]) -> pa.DataType:
    """The Arrow type of a pydantic field annotation (Optional is nullable, Literal is its value type)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"cannot type a union of {inner}")
        return arrow_type(inner[0], mapping_keys)
    if origin is typing.Literal:
        return _SCALARS[type(args[0])]
    if origin is list:
        return pa.list_(arrow_type(args[0], mapping_keys))
    if origin is dict:  # {name: Model}: a struct of the names seen in the data
        value = arrow_type(args[1], mapping_keys)
        return pa.struct([(k, value) for k in mapping_keys.get(args[1], [])])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_struct(annotation, mapping_keys)
    return _SCALARS[annotation]


def model_struct(model: type[BaseModel], mapping_keys: dict[type, list[str]]) -> pa.StructType:
    return pa.struct([(name, arrow_type(f.annotation, mapping_keys)) for name, f in model.model_fields.items()])


def hf_feature(name: str, t: pa.DataType) -> dict:
    """One entry of a card's `features` list (the YAML form of `datasets.Features`)."""
    return {"name": name, **_hf_type(t)}


def _hf_type(t: pa.DataType) -> dict:
    if pa.types.is_struct(t):
        return {"struct": [hf_feature(f.name, f.type) for f in t]}
    if pa.types.is_list(t):
        inner = _hf_type(t.value_type)
        if "list" in inner:
            raise TypeError("nested lists are not in any eventcap table")
        return {"list": inner.get("dtype", inner.get("struct"))}
    names = {pa.string(): "string", pa.float64(): "float64", pa.float32(): "float32", pa.int64(): "int64",
             pa.int32(): "int32", pa.bool_(): "bool"}
    return {"dtype": names[t]}


def shard_features(model_stages: list[str], sample_rate: int = 16000) -> list[dict]:
    """Columns of the `shards` config: the WebDataset key and URL, the audio, the annotation JSON, the caption."""
    seg = model_struct(SegmentAnnotation, {ModelInfo: model_stages})
    return [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
            {"name": "flac", "dtype": {"audio": {"sampling_rate": sample_rate}}},
            hf_feature("json", seg), {"name": "txt", "dtype": "string"}]


def schema_features(schema: pa.Schema) -> list[dict]:
    """The card's `features` list of a table (one entry per column, in order)."""
    return [hf_feature(f.name, f.type) for f in schema]


def manifest_features() -> list[dict]:
    return schema_features(MANIFEST_SCHEMA)


# ------------------------------------------------------------------ the card
def render_card(header: dict, body: str) -> str:
    """A dataset card: the YAML header between `---` lines (what the Hub and `datasets` read), then the body."""
    return f"---\n{yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000)}---\n{body}"


def model_stages_in(output: str) -> list[str]:
    """The keys of `models` over the whole output (one parse per distinct JSON string)."""
    t = read_parquet_dir(output, "manifest", ["models"])
    if t is None or t.num_rows == 0:
        return []
    keys: set[str] = set()
    for s in pc.unique(t.column("models")).to_pylist():
        keys.update(json.loads(s or "{}"))
    return sorted(keys)


def card_header(model_stages: list[str]) -> dict:
    return {
        "pretty_name": "eventcap audio annotations",
        "tags": ["audio", "eventcap", "webdataset"],
        "configs": [{"config_name": "shards", "default": True,
                     "data_files": [{"split": "train", "path": "shards/*.tar"}]}],
        "dataset_info": [{"config_name": "shards", "features": shard_features(model_stages)}],
    }


BODY = """
# eventcap audio annotations

Written by `eventcap annotate` (schema {schema}). {n:,} segments ({hours:.2f} h of audio) from {sources:,}
sources, in {shards:,} WebDataset shards. Each segment was cut at event boundaries, routed to the speech,
music and general-audio branches and captioned; `report.html` has the charts.

| files | one row per |
|---|---|
| `shards/*.tar` (config `shards`, WebDataset) | segment: `flac` (16 kHz mono), `json` (the full annotation), `txt` (the caption) |
| `manifest/*.parquet` | segment: lineage, routes, branch fields and captions, no audio |

A shard counts only when its `shards/shard-NNNNNN.keys.json` marker exists (it is written last).
`quarantine/*.parquet` lists every input that could not be used, with the reason.

```python
from datasets import load_dataset
shards = load_dataset("OUT", split="train")  # typed from this card: json.speech is a struct even when null
manifest = load_dataset("parquet", data_files="OUT/manifest/*.parquet", split="train")  # Parquet has its types

import webdataset as wds
for sample in wds.WebDataset(sorted(glob.glob("OUT/shards/shard-*.tar"))):
    sample["__key__"], sample["flac"], sample["json"], sample["txt"]
```

```sql
-- duckdb
SELECT routes, count(*), sum(duration_s) FROM 'OUT/manifest/*.parquet' GROUP BY routes;
```

Lineage: every row carries `source_uri`, `source_sha256`, `start_s`/`end_s` (the segment's place in its
source; times inside a segment are relative to its start), the model versions (`models`) and the job's
`config_hash`. The licence of the audio is that of its sources.
"""


def write_dataset_card(output: str) -> str:
    """Write `OUT/README.md` (YAML header + a short description); returns its path."""
    output = output.rstrip("/")
    t = read_parquet_dir(output, "manifest", ["source_uri", "duration_s", "shard"])
    n = t.num_rows if t is not None else 0
    body = BODY.format(schema=SCHEMA_VERSION, n=n,
                       hours=(pc.sum(t.column("duration_s")).as_py() or 0) / 3600 if n else 0.0,
                       sources=len(pc.unique(t.column("source_uri"))) if n else 0,
                       shards=len(pc.unique(t.column("shard"))) if n else 0)
    fs, root = filesystem_for(output)
    write_atomic(fs, f"{root}/README.md", render_card(card_header(model_stages_in(output)), body).encode())
    return f"{output}/README.md"
