"""The three execution lanes as the in-process preservation tests drive them: the same
``N`` records with ids ``0..N-1`` from a row source, a Python batch source and an Arrow
source, plus how each lane's checkpoint value maps to "records covered"."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from agora import (
    ArrowBatchSource,
    ArrowFilterMiddleware,
    BaseSource,
    FilterMiddleware,
    IterableBatchSource,
    IterableSource,
    JsonLinesSink,
    SyncSQLiteCheckpointStore,
)
from preservation.audit import AuditingCheckpointStore

__all__ = [
    "BATCH",
    "LANES",
    "N",
    "ROW_GROUP",
    "audited_store",
    "covered",
    "drop_filter",
    "file_sink",
    "rows",
    "source_for",
    "unit_size",
    "unit_start",
]

N = 60
BATCH = 6  # rows per source batch on the batch lanes
ROW_GROUP = 4  # DeliveryConfig.batch_size on the row lane (writer grouping)
LANES = ("rows", "batches", "arrow")


def rows(n: int = N) -> list[dict[str, Any]]:
    return [{"id": i, "value": i * 10} for i in range(n)]


def source_for(lane: str, n: int = N) -> BaseSource:
    data = rows(n)
    if lane == "rows":
        return IterableSource(data, name="rows")
    if lane == "batches":
        return IterableBatchSource([data[i:i + BATCH] for i in range(0, n, BATCH)],
                                   name="batches")
    return ArrowBatchSource(pa.Table.from_pylist(data), batch_size=BATCH, name="arrow")


def covered(lane: str) -> Callable[[Any], int]:
    """Checkpoint value → number of leading records it covers, for ``source_for(lane)``."""
    if lane == "rows":
        return lambda value: int(value)
    if lane == "batches":
        return lambda value: int(value["batch"]) * BATCH + int(value["row"])
    return lambda value: int(value["row"])


def unit_size(lane: str) -> int:
    """Records per unit: the writer group on the row lane, the source batch otherwise."""
    return ROW_GROUP if lane == "rows" else BATCH


def unit_start(lane: str, rid: int) -> int:
    """First id of the unit holding record ``rid``."""
    return rid // unit_size(lane) * unit_size(lane)


def drop_filter(lane: str, keep: Callable[[int], bool]) -> Any:
    """A middleware that drops the records whose id fails ``keep``, native to the lane."""
    if lane == "arrow":
        return ArrowFilterMiddleware(
            lambda b: pa.array([keep(i) for i in b.column("id").to_pylist()]), name="drop")
    return FilterMiddleware(lambda r: keep(int(r["id"])), name="drop")


def audited_store(tmp_path: Path, lane: str, *, sink_paths: list[Path],
                  dlq_path: Path | None, excused: Iterable[int] = ()) -> AuditingCheckpointStore:
    """An audited SQLite checkpoint store in ``tmp_path`` for ``source_for(lane)``."""
    return AuditingCheckpointStore(
        SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"), covered=covered(lane),
        sink_paths=sink_paths, dlq_path=dlq_path, excused=excused)


def file_sink(path: Path, name: str = "out") -> JsonLinesSink:
    """A JSON-lines sink that appends, so a resumed run continues the same file."""
    return JsonLinesSink(path, mode="a", name=name)
