"""Readers of outputs written with an earlier SCHEMA_VERSION: they load as the current contract.

Every reader of a stored annotation (`<key>.json` in a shard) or of a stored manifest / caption table goes
through here, so an output annotated before a rename still trains, re-captions and regenerates SFT data.
"""

from __future__ import annotations

import json

import pyarrow as pa

from schemas.annotation import SegmentAnnotation
from schemas.version import SCHEMA_VERSION

# 1.0 -> 2.0: the general-audio branch had a second name, `sound`
_RENAMED_1_0 = {"sound": "general", "sound_caption": "general_caption", "other_share": "general_share"}
_RENAMED_COLUMNS_1_0 = {"other_share": "general_share", "sound_tags": "general_tags", "sound_caption": "general_caption"}


class SchemaVersionError(ValueError):
    """An output written by a newer eventcap than this one (it cannot know what changed)."""


def _major(version: str) -> int:
    return int(str(version).split(".", 1)[0])


def upgrade_annotation(d: dict) -> dict:
    """A stored annotation dict (any known version) as the current version's dict."""
    version = d.get("schema_version", "1.0")
    if _major(version) > _major(SCHEMA_VERSION):
        raise SchemaVersionError(f"annotation {d.get('key')!r} has schema_version {version}, newer than this "
                                 f"eventcap's {SCHEMA_VERSION}: upgrade eventcap to read it")
    if _major(version) < 2:
        d = {_RENAMED_1_0.get(k, k): v for k, v in d.items()}
        d["models"] = {("general." + k[len("sound."):] if k.startswith("sound.") else k): v
                       for k, v in (d.get("models") or {}).items()}
        d["schema_version"] = SCHEMA_VERSION
    return d


def read_annotation(data: str | bytes) -> SegmentAnnotation:
    """`<key>.json` of a shard, written by this or an earlier schema version."""
    return SegmentAnnotation.model_validate(upgrade_annotation(json.loads(data)))


def current_column(name: str) -> str:
    """The current name of a manifest column stored under `name` by any schema version."""
    return _RENAMED_COLUMNS_1_0.get(name, name)


def upgrade_table(table: pa.Table) -> pa.Table:
    """A manifest or caption table of an earlier schema version with the current column names."""
    return table.rename_columns([current_column(n) for n in table.column_names])
