"""RowStage: the Ray batch protocol of the annotate plan, written once.

The counterpart of DataTrove's `PipelineStep`. Ray calls a stage with a batch (columns of `stages/rows.py`);
the stage hands each row of a kind it `handles` (and `wants`) to its own code as a typed `Row`, and passes
every other row on untouched and unparsed. Around the stage's code the base class
    - parses a segment's SegmentAnnotation at most once per stage (on first use) and dumps it once;
    - times the work and adds it to the row's per-stage stats (`name`: rows, seconds);
    - turns an exception into a quarantine row with a class from `schemas/errors.ErrorClass` and the row's
      lineage (source URI, sha256, segment key), so one bad row never sinks its batch;
    - for batch stages, retries a failed batch one row at a time, so only the row that fails is quarantined;
    - yields output every `flush_every` rows (a long source streams through the segmenter), and its very
      first output row alone, so the first segment reaches the next stages at once; a batch actor stage
      likewise runs its very first row as a batch of one and hands it on before the rest of that batch.

A concrete stage declares `name`, `handles`, `after` (the stages whose output it reads: `build_plan` refuses
an order that breaks this) and implements `process(row)` (one row in, one row or an iterable of rows out) or
`process_batch(rows)` (one output row per input row, in order).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import ClassVar, Literal

import numpy as np

from pipeline.resources import TASK_BATCH_ROWS, release_free_heap
from schemas.config import JobConfig
from schemas.errors import OutputFailed, classify
from stages.rows import Row, RowKind, batch_len, quarantine_row, to_batch


class RowStage:
    name: ClassVar[str] = ""  # stats key, quarantine `stage`, and what other stages name in `after`
    handles: ClassVar[frozenset[RowKind]] = frozenset({RowKind.SEGMENT})
    after: ClassVar[tuple[str, ...]] = ()  # stages that must run before this one
    runs_as: ClassVar[Literal["task", "actor"]] = "task"  # a Ray task (light, stateless) or an actor pool
    config_section: ClassVar[str | None] = None  # JobConfig section whose `resources` place an actor pool
    flush_every: ClassVar[int | None] = None  # yield a batch every this many output rows (None: once)
    release_heap: ClassVar[bool] = False  # return the free heap to the system after each output (heavy actors)

    def __init__(self, cfg: JobConfig | dict, num_threads: int = 1):
        self.cfg = cfg if isinstance(cfg, JobConfig) else JobConfig.model_validate(cfg)
        self.num_threads = num_threads
        self._flushed = False
        section = getattr(self.cfg, self.config_section) if self.config_section else None
        # rows per process_batch call: the section's `resources.batch_size` (Ray Data bundles the same number
        # per call, pipeline/plan.py; a call that gets more is cut here)
        self.batch_size: int | None = section.resources.batch_size if section is not None else None

    @classmethod
    def active(cls, cfg: JobConfig) -> bool:
        """Whether the job runs this stage at all; one the config turns off leaves the plan (no actor, no copy
        of every block passing through it)."""
        return True

    @classmethod
    def task_batch_rows(cls, cfg: JobConfig) -> int:
        """Rows per call when the stage runs as a task (an actor stage's come from its `resources.batch_size`)."""
        return TASK_BATCH_ROWS

    # ---------------------------------------------------------------- what a stage implements
    def wants(self, row: Row) -> bool:
        """Whether to handle a row of a handled kind; decide from unparsed columns (key, routes)."""
        return True

    def process(self, row: Row) -> Row | Iterable[Row]:
        raise NotImplementedError(f"{type(self).__name__} implements process or process_batch")

    def process_batch(self, rows: list[Row]) -> list[Row]:
        """One output row per input row, in order. Override to batch model calls; the default is `process`."""
        out = []
        for r in rows:
            res = self.process(r)
            if not isinstance(res, Row):
                raise TypeError(f"{self.name}: process_batch needs one output row per input row")
            out.append(res)
        return out

    # ---------------------------------------------------------------- the protocol
    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        pending: list[dict] = []
        todo: list[tuple[int, Row]] = []  # rows for process_batch, with their place in `pending`
        batched = type(self).process_batch is not RowStage.process_batch
        for i in range(batch_len(batch)):
            kind = batch["kind"][i]
            if kind not in self.handles:
                pending.append({c: batch[c][i] for c in batch})  # untouched, unparsed
                continue
            row = Row.from_batch(batch, i)
            if not self.wants(row):
                pending.append(row.to_dict())
                continue
            if batched:
                todo.append((len(pending), row))
                pending.append({})  # filled in below, so the order of rows is kept
                continue
            for out in self._one(row):
                pending.append(out.to_dict())
                if self.flush_every and len(pending) >= (self.flush_every if self._flushed else 1):
                    self._flushed = True  # the actor's first output row goes on at once: time to first segment
                    yield to_batch(pending)
                    pending = []
                    self._release()
        step = self.batch_size or len(todo) or 1
        done = 0  # rows of `pending` already yielded
        chunks = [todo[lo:lo + step] for lo in range(0, len(todo), step)]
        first = self.runs_as == "actor" and not self._flushed  # (a task stage's object is new in every task)
        if first and chunks and len(chunks[0]) > 1:  # the actor's first row goes on alone, before its batch's rest
            chunks[:1] = [chunks[0][:1], chunks[0][1:]]
        for chunk in chunks:
            for (slot, _), out in zip(chunk, self._batch([r for _, r in chunk]), strict=True):
                pending[slot - done] = out.to_dict()
            if first:
                first, self._flushed = False, True
                last = chunk[-1][0] + 1 - done
                yield to_batch(pending[:last])
                pending, done = pending[last:], done + last
        if pending:
            yield to_batch(pending)
            self._release()

    def _release(self) -> None:
        if self.release_heap:
            release_free_heap()

    def _one(self, row: Row) -> Iterator[Row]:
        """The outputs of `process(row)`, timed one by one (a generator's time is spent in `next`)."""
        carried = row.stats
        t0 = time.perf_counter()
        try:
            res = self.process(row)
            outputs = iter([res] if isinstance(res, Row) else res)
            while True:
                out = next(outputs, None)
                if out is None:
                    return
                out.add_stats(self.name, time.perf_counter() - t0, carried=None if out is row else carried)
                carried = None  # the input's stats travel on with its first output only
                yield out
                t0 = time.perf_counter()
        except OutputFailed:  # the output is failing, not this row: the job stops (issue 22)
            raise
        except Exception as e:  # noqa: BLE001 - bad input never crashes the job
            q = self.quarantine(row, e)
            q.add_stats(self.name, time.perf_counter() - t0, carried=carried)
            yield q

    def _batch(self, rows: list[Row]) -> list[Row]:
        """process_batch over `rows`; when it raises, again one row at a time, quarantining the rows that fail."""
        t0 = time.perf_counter()
        try:
            outs = self.process_batch(rows)
        except Exception:  # noqa: BLE001 - retried one by one so one bad row cannot sink the batch
            outs = []
            for r in rows:
                try:
                    outs.extend(self.process_batch([r]))
                except Exception as e:  # noqa: BLE001
                    outs.append(self.quarantine(r, e))
        per_row = (time.perf_counter() - t0) / len(rows)
        for r, out in zip(rows, outs, strict=True):
            out.add_stats(self.name, per_row, carried=None if out is r else r.stats)
        return outs

    def quarantine(self, row: Row, exc: BaseException) -> Row:
        """The quarantine row for `row` after `exc`: a declared error class, the row's lineage."""
        error, message = classify(exc)
        uri, sha256, key = row.lineage()
        return quarantine_row(uri, getattr(exc, "stage", None) or self.name, error, message, sha256=sha256, key=key)


def check_order(stages: list[type[RowStage]]) -> None:
    """Refuse a plan in which a stage comes before a stage it reads (`after`), or reads a stage not in it."""
    seen: set[str] = set()
    names = {s.name for s in stages}
    for s in stages:
        for dep in s.after:
            if dep not in names:
                raise PlanError(f"stage {s.name!r} reads the output of {dep!r}, which is not in the plan")
            if dep not in seen:
                raise PlanError(f"stage {s.name!r} must come after {dep!r}, which it reads; "
                                f"the plan puts {dep!r} later")
        seen.add(s.name)


class PlanError(ValueError):
    """A plan whose stages are in an order that breaks a declared dependency."""
