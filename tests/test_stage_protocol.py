"""The stage protocol (stages/base.py): kinds a stage sees, quarantine with a declared class, one parse per
stage, declared order; and outputs of the previous schema version still load. No Ray, no models."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.annotation import SegmentAnnotation, Tag
from schemas.compat import read_annotation, upgrade_table
from schemas.config import JobConfig
from schemas.errors import ErrorClass
from schemas.version import SCHEMA_VERSION
from stages.base import PlanError, RowStage, check_order
from stages.branches import GeneralAudioStage, MusicStage, SpeechStage
from stages.caption import CaptionMerger
from stages.probe import ProbeSources
from stages.router import Router
from stages.rows import PAYLOAD_COUNTS, Row, RowKind, quarantine_row, segment_row, to_batch, to_rows
from stages.segment import EventSegmenter
from tests.caption_fixtures import segment, sounds

CFG = JobConfig()


def seg_rows(n: int, routes: list[str] | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        seg = segment(f"k{i}", 1.0, routes or [], (0.1, 0.0, 0.9))
        rows.append(segment_row(seg, np.full(16000, 0.01 * (i + 1), np.float32), None).to_dict())
    return rows


def run(stage: RowStage, rows: list[dict]) -> list[dict]:
    return [r for b in stage(to_batch(rows)) for r in to_rows(b)]


class Loudest(RowStage):
    """A stage of five lines: the peak of each segment's audio into its top classes; raises on key k2."""

    name = "loudest"

    def process(self, row: Row) -> Row:
        if row.key == "k2":
            raise ValueError("cannot measure this one")
        row.segment.top_classes = [Tag(label="peak", score=float(np.abs(row.samples).max()))]
        return row


class BatchedLoudest(Loudest):
    """The same as a batch actor stage: one failing row must not sink the others of its batch."""

    name = "loudest_batched"
    runs_as = "actor"
    calls: list[int]

    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls = []

    def process_batch(self, rows: list[Row]) -> list[Row]:
        self.calls.append(len(rows))
        return [self.process(r) for r in rows]


@pytest.mark.parametrize("stage_cls", [Loudest, BatchedLoudest])
def test_a_stage_that_raises_on_one_segment_quarantines_it_with_its_class(stage_cls):
    stage = stage_cls(CFG)
    source = Row(RowKind.SOURCE, json.dumps({"uri": "/c/x.wav", "sha256": "ab" * 32})).to_dict()
    out = run(stage, [*seg_rows(4), source])
    kinds = [r["kind"] for r in out]
    assert kinds == ["segment", "segment", "quarantine", "segment", "source"], kinds
    q = json.loads(out[2]["payload"])
    assert q["error"] == ErrorClass.STAGE_FAILED and q["stage"] == stage_cls.name and q["key"] == "k2"
    assert q["message"] == "ValueError: cannot measure this one" and q["source_uri"] == "file:///corpus/k2.wav"
    for i in (0, 1, 3):
        seg = SegmentAnnotation.model_validate_json(out[i]["payload"])
        assert seg.top_classes[0].score == pytest.approx(0.01 * (int(seg.key[1]) + 1))
        assert json.loads(out[i]["stats"])[stage_cls.name]["rows"] == 1
    assert out[4] == source  # not a kind the stage handles: the same row, untouched
    if stage_cls is BatchedLoudest:
        # the stage's first row alone (time to first segment), the rest of the batch, then one by one after it failed
        assert stage.calls == [1, 3, 1, 1, 1]


def test_a_batch_stage_hands_on_its_first_row_before_it_runs_the_rest_of_that_batch():
    """Issue 20, time to first segment: the speech actor's first batch of 8 took ~20 s, and its first segment
    waited for all of it. Now the stage's first row runs alone and leaves at once; later batches stay whole."""
    stage = BatchedLoudest(CFG)
    source = Row(RowKind.SOURCE, json.dumps({"uri": "/c/x.wav", "sha256": "ab" * 32})).to_dict()
    out = stage(to_batch([source, *seg_rows(2), *seg_rows(5)[3:]]))
    first = to_rows(next(out))
    assert [r["kind"] for r in first] == ["source", "segment"] and first[1]["key"] == "k0"
    assert stage.calls == [1]  # the rest of the batch has not run yet
    rest = [r for b in out for r in to_rows(b)]
    assert [r["key"] for r in rest] == ["k1", "k3", "k4"] and stage.calls == [1, 3]
    assert [r["key"] for r in run(stage, seg_rows(2))] == ["k0", "k1"] and stage.calls == [1, 3, 2]
    task = type("BatchedTask", (BatchedLoudest,), {"runs_as": "task"})(CFG)  # a new object in every task
    assert [r["key"] for r in run(task, seg_rows(2))] == ["k0", "k1"] and task.calls == [2]


def test_a_task_stage_takes_one_row_per_call_and_an_llm_merger_fills_its_requests():
    assert Router.task_batch_rows(CFG) == 1 and CaptionMerger.task_batch_rows(CFG) == 1
    llm = JobConfig.model_validate({"caption": {"merger": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                "max_in_flight": 6}})
    assert CaptionMerger.task_batch_rows(llm) == 6


def test_process_sees_only_the_kinds_it_declares_and_the_rows_it_wants():
    seen = []

    class Spy(RowStage):
        name = "spy"
        handles = frozenset({RowKind.SEGMENT})

        def wants(self, row):
            return row.routed_to("music")

        def process(self, row):
            seen.append((row.kind, row.key))
            return row

    rows = [Row(RowKind.SOURCE_REF, json.dumps({"uri": "/c/a.wav"})).to_dict(),
            Row(RowKind.SOURCE, json.dumps({"uri": "/c/b.wav", "sha256": "0" * 64})).to_dict(),
            quarantine_row("/c/c.wav", "ingest", ErrorClass.EMPTY_FILE, "file is empty").to_dict(),
            *seg_rows(1, ["speech"]), *[{**r, "key": "m"} for r in seg_rows(1, ["music", "general"])]]
    rows[4]["routes"] = "music,general"
    rows[3]["routes"] = "speech"
    before = PAYLOAD_COUNTS["parse"]
    out = run(Spy(CFG), rows)
    assert seen == [(RowKind.SEGMENT, "m")]
    assert out[:4] == rows[:4]  # passed through untouched, in order
    assert PAYLOAD_COUNTS["parse"] - before == 0  # the spy never read a payload: nothing was parsed


def test_a_plan_that_breaks_a_declared_dependency_is_refused():
    check_order([ProbeSources, EventSegmenter, Router, SpeechStage, MusicStage, GeneralAudioStage, CaptionMerger])
    with pytest.raises(PlanError, match="'music' must come after 'speech'"):
        check_order([ProbeSources, EventSegmenter, Router, MusicStage, SpeechStage, GeneralAudioStage, CaptionMerger])
    with pytest.raises(PlanError, match="'route' reads the output of 'segment', which is not in the plan"):
        check_order([ProbeSources, Router])


def test_the_annotation_is_parsed_once_per_stage_and_only_by_stages_it_is_routed_to():
    class Touch(RowStage):
        def process(self, row):
            row.segment.caption = row.segment.caption + self.name
            return row

    stages = [type(n, (Touch,), {"name": n}) for n in ("a", "b", "c")]
    rows = seg_rows(3, ["general"])
    before = dict(PAYLOAD_COUNTS)
    for st in stages:
        rows = run(st(CFG), rows)
    assert PAYLOAD_COUNTS["parse"] - before.get("parse", 0) == 3 * 3
    assert PAYLOAD_COUNTS["dump"] - before.get("dump", 0) == 3 * 3
    assert {SegmentAnnotation.model_validate_json(r["payload"]).caption for r in rows} == {"abc"}


# ------------------------------------------------------------------ the previous schema version
def v1_annotation() -> dict:
    """A `<key>.json` as schema 1.0 wrote it: the general-audio branch was named `sound`."""
    d = json.loads(sounds("old-1").model_dump_json())
    d["sound"], d["sound_caption"], d["other_share"] = d.pop("general"), d.pop("general_caption"), d.pop("general_share")
    d["models"] = {"sound.events": {"name": "yamnet", "version": "1"}}
    d["schema_version"] = "1.0"
    return d


def test_an_output_of_the_previous_schema_version_still_loads(tmp_path):
    from jobs.sft.source import AnnotateOutput
    from pipeline.report import read_parquet_dir

    old = v1_annotation()
    seg = read_annotation(json.dumps(old))
    assert seg.schema_version == SCHEMA_VERSION and seg.general is not None
    assert [e.label for e in seg.general.events] == ["White noise", "Static", "Ding"]
    assert seg.general_caption == old["sound_caption"] and seg.general_share == 1.0
    assert list(seg.models) == ["general.events"]

    # a whole 1.0 output: one committed shard and its manifest, read by the SFT job's and the report's readers
    (tmp_path / "shards").mkdir()
    (tmp_path / "manifest").mkdir()
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar", "w") as tar:
        data = json.dumps(old).encode()
        info = tarfile.TarInfo("old-1.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "shards" / "shard-000000.keys.json").write_text(json.dumps({"keys": ["old-1"]}))
    pq.write_table(pa.table({"key": ["old-1"], "shard": ["shard-000000.tar"], "other_share": [1.0],
                             "sound_caption": [old["sound_caption"]], "schema_version": ["1.0"]}),
                   tmp_path / "manifest" / "part-0.parquet")
    out = AnnotateOutput(str(tmp_path), 0)
    refs, problems = out.segments()
    assert [r.key for r in refs] == ["old-1"] and problems == {}
    loaded = out.read_annotations("shard-000000.tar")["old-1"]
    assert isinstance(loaded, SegmentAnnotation) and loaded.general.scene_tags == ["White noise"]
    table = read_parquet_dir(str(tmp_path), "manifest", ["key", "general_caption", "general_share"])
    assert table.column_names == ["key", "general_share", "general_caption"]
    assert table.column("general_caption").to_pylist() == [old["sound_caption"]]
    assert upgrade_table(pa.table({"sound_tags": [[]]})).column_names == ["general_tags"]


def test_a_newer_schema_version_is_refused_with_a_clear_message():
    d = v1_annotation()
    d["schema_version"] = "9.0"
    with pytest.raises(ValueError, match="newer than this eventcap"):
        read_annotation(json.dumps(d))
