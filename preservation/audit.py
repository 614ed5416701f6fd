"""Independent read-back and invariant checks: what a sink file and a DLQ file hold on
disk, a checkpoint store that audits every save against them, and the zero-loss /
bounded-duplicate checker run after crash-and-resume loops."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agora import Checkpoint, CheckpointStore, DLQRecord
from agora.stores import read_dlq

__all__ = [
    "AuditingCheckpointStore",
    "BounceReport",
    "check_bounce",
    "dlq_id",
    "dlq_records",
    "output_ids",
    "sink_ids",
]


def sink_ids(path: str | Path) -> list[int]:
    """Ids of the complete lines of a JSON-lines sink file, in file order (a torn last
    line from a killed writer is ignored: it was never flushed, never covered)."""
    path = Path(path)
    if not path.exists():
        return []
    ids = []
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            ids.append(int(json.loads(raw)["id"]))
    return ids


def output_ids(path: str | Path) -> list[int]:
    """Ids in a sink's output file, in file order, by extension: ``.jsonl`` (see
    :func:`sink_ids`), ``.csv`` (header row, then records) or ``.parquet``."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return sink_ids(path)
    if not path.exists():
        return []
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return [int(row["id"]) for row in csv.DictReader(fh)]
    return [int(v) for v in pq.read_table(path, columns=["id"]).column("id").to_pylist()]


def dlq_records(path: str | Path) -> list[DLQRecord]:
    """Every record a DLQ file (SQLite or JSON lines) durably holds; [] if it does not exist."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    return list(read_dlq(path))


def dlq_id(record: DLQRecord) -> int:
    """The id of the source record behind a DLQ record: the ``id`` field of a dict, or the
    first field of a raw CSV line dead-lettered at ``stage="source_record"``."""
    value = record.record
    if isinstance(value, dict):
        return int(value["id"])
    if isinstance(value, str):
        return int(value.split(",", 1)[0])
    raise AssertionError(f"DLQ record has no recognisable id: {record!r}")


class AuditingCheckpointStore(CheckpointStore):
    """Wraps a real store. At every save, *before* delegating, it reads the sink files and
    the DLQ file back from disk and records a violation if the checkpoint being saved
    covers a record that is neither in a sink file, nor in the DLQ file, nor ``excused``
    (dropped, unrouted, or errored under ``log_and_continue``).

    ``covered(value)`` maps a checkpoint value to the records it covers: either a count
    ``n`` (ids ``0..n-1``, for sources that emit ids in order) or an explicit set of ids.
    Violations are collected, not raised: an exception here would only turn into a
    checkpoint failure.
    """

    def __init__(self, inner: CheckpointStore, *, covered: Callable[[Any], int | set[int]],
                 sink_paths: Iterable[str | Path], dlq_path: str | Path | None,
                 excused: Iterable[int] = ()) -> None:
        self.inner = inner
        self.covered = covered
        self.sink_paths = list(sink_paths)
        self.dlq_path = dlq_path
        self.excused = set(excused)
        self.saves: list[Any] = []
        self.violations: list[str] = []

    def handled_on_disk(self) -> set[int]:
        handled = set(self.excused)
        for path in self.sink_paths:
            handled.update(sink_ids(path))
        if self.dlq_path is not None:
            handled.update(dlq_id(r) for r in dlq_records(self.dlq_path))
        return handled

    def open(self) -> None:
        self.inner.open()

    def load(self, key: str) -> Checkpoint | None:
        return self.inner.load(key)

    def _ids(self, value: Any) -> set[int]:
        covered = self.covered(value)
        return set(range(covered)) if isinstance(covered, int) else set(covered)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        ids = self._ids(checkpoint.value)
        if self.saves and not self._ids(self.saves[-1]) <= ids:
            self.violations.append(
                f"checkpoint moved backwards: {self.saves[-1]!r} -> {checkpoint.value!r}")
        missing = sorted(ids - self.handled_on_disk())
        if missing:
            self.violations.append(
                f"checkpoint {checkpoint.value!r} covers {len(ids)} records but ids "
                f"{missing[:10]} are in neither a sink file nor the DLQ on disk")
        self.inner.save(key, checkpoint)
        self.saves.append(checkpoint.value)

    def reset(self, key: str) -> bool:
        return self.inner.reset(key)

    def list_keys(self) -> list[str]:
        return self.inner.list_keys()

    def close(self) -> None:
        self.inner.close()


@dataclass
class BounceReport:
    """Outcome of a crash-and-resume loop, in Kafka ``test_bounce`` terms."""

    n: int
    crashes: int
    sink: list[int]
    dlq: list[int]
    missing: set[int] = field(default_factory=set)
    sink_duplicates: int = 0
    dlq_duplicates: int = 0
    order_breaks: int = 0

    def describe(self) -> str:
        return (f"n={self.n} crashes={self.crashes} sink_lines={len(self.sink)} "
                f"dlq_rows={len(self.dlq)} missing={len(self.missing)} "
                f"sink_dups={self.sink_duplicates} dlq_dups={self.dlq_duplicates} "
                f"order_breaks={self.order_breaks}")


def check_bounce(*, n: int, crashes: int, sink: list[int], dlq: list[int],
                 poison: set[int], dup_bound_per_crash: int) -> BounceReport:
    """Assert the crash-safety guarantees (contract §7) over a finished crash/resume loop.

    * zero loss: every id in ``range(n)`` is in the sink or in the DLQ;
    * disjoint: no id is both written and dead-lettered; the DLQ holds exactly ``poison``;
    * bounded duplicates: sink duplicates ≤ ``crashes * dup_bound_per_crash``;
    * order: the sink file is in source order, except that after each crash the replayed
      tail may start again from an earlier id (at most one break per crash);
    * vacuity: at least one crash happened and every non-poison record reached the sink.
    """
    report = BounceReport(n=n, crashes=crashes, sink=sink, dlq=dlq)
    seen_sink, seen_dlq = set(sink), set(dlq)
    report.missing = set(range(n)) - (seen_sink | seen_dlq)
    report.sink_duplicates = sum(c - 1 for c in Counter(sink).values())
    report.dlq_duplicates = sum(c - 1 for c in Counter(dlq).values())
    report.order_breaks = sum(1 for a, b in pairwise(sink) if b <= a)
    info = report.describe()
    assert crashes >= 1, f"vacuous run: no crash actually happened ({info})"
    assert len(seen_sink) >= n - len(poison), f"not enough records were processed ({info})"
    assert not report.missing, f"records lost: {sorted(report.missing)[:20]} ({info})"
    both = seen_sink & seen_dlq
    assert not both, f"ids both written and dead-lettered: {sorted(both)[:20]} ({info})"
    assert seen_dlq == poison, (
        f"DLQ holds {sorted(seen_dlq - poison)[:10]} beyond the poison set and lacks "
        f"{sorted(poison - seen_dlq)[:10]} ({info})")
    assert seen_sink <= set(range(n)), f"sink holds ids the source never had ({info})"
    bound = crashes * dup_bound_per_crash
    assert report.sink_duplicates <= bound, (
        f"{report.sink_duplicates} sink duplicates exceed the bound {bound} "
        f"(= {crashes} crashes x {dup_bound_per_crash}) ({info})")
    assert report.dlq_duplicates <= bound, f"DLQ duplicates exceed the bound {bound} ({info})"
    assert report.order_breaks <= crashes, (
        f"sink order broke {report.order_breaks} times in {crashes} crashes ({info})")
    return report
