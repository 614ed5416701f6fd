"""The records the engine passes between its boxes: a ``Unit`` is one source emission
(a record group on the row lane, a batch on the batch lanes, or a malformed-record
marker) together with everything that happened to it on the way to the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from agora.failures import FailureDecision
from agora.records import DLQStage, MalformedRecord

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["GONE", "UNKNOWN_ROWS", "Failure", "RowMap", "Unit", "source_rows_of"]


class _Gone:
    """Marks a slot whose record was dropped or failed; it no longer flows downstream."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "GONE"


GONE: Final[Any] = _Gone()  # typed Any: it sits in ``values`` among the user's records


class _UnknownRows:
    """``Unit.row_map`` value once rows can no longer be traced to the source batch."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN_ROWS"


UNKNOWN_ROWS: Final = _UnknownRows()

#: Which rows of the source batch the current batch holds: None = all, in order; an
#: Arrow array of indices; or ``UNKNOWN_ROWS``.
RowMap: TypeAlias = "pa.Array | _UnknownRows | None"


def source_rows_of(unit: Unit) -> list[Any] | None:
    """Arrow lane: the source rows behind ``unit.batch``, as dicts (None if untraceable)."""
    if unit.source_batch is None or isinstance(unit.row_map, _UnknownRows):
        return None
    rows: list[Any]
    if unit.row_map is None:
        rows = unit.source_batch.to_pylist()
    else:
        rows = unit.source_batch.take(unit.row_map).to_pylist()
    return rows


@dataclass(slots=True)
class Failure:
    """One record's failure at one stage, waiting for the committer to handle it."""

    stage: DLQStage | str  # a str: a source's own stage name (SourceRecordError(stage=…))
    component: str  # middleware, sink or source name
    error: BaseException
    record: Any  # as the source emitted it (Arrow: the row entering the failed stage)
    processed_record: Any = None
    is_sink: bool = False
    #: I/O lane: the attempt that failed last, and the retry policy's attempt budget
    attempt: int | None = None
    max_attempts: int | None = None
    #: the failure's classification, decided once by the committer (``runtime.triage``)
    decision: FailureDecision | None = None


@dataclass(slots=True)
class Unit:
    """One source emission travelling through the chain.

    Python lanes keep ``values`` aligned with ``source_rows`` (``GONE`` marks removed
    slots); the Arrow lane keeps the current ``batch``. ``checkpoint`` is the source
    position after this unit: the committer may save it once the unit is handled.
    """

    seq: int
    checkpoint: Any
    n_source: int
    source_rows: list[Any] | None = None
    values: list[Any] | None = None
    batch: Any = None
    #: Arrow lane: the batch as the source emitted it, and which of its rows the current
    #: ``batch`` holds (None = all, in order; UNKNOWN_ROWS once a middleware filtered
    #: rows in a way that cannot be traced).
    source_batch: Any = None
    row_map: RowMap = None
    malformed: MalformedRecord | None = None
    dropped: int = 0
    errored: int = 0
    written: int = 0
    #: records written by at least one sink and rejected by another (counted in ``written``)
    partially_written: int = 0
    #: given up after a stop request: never committed, re-read on resume
    abandoned: bool = False
    failures: list[Failure] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    #: per-record ack callbacks of the source (upstream's ``delivery_success_callback``),
    #: run in order once the unit is handled and durable. On the row lane they line up
    #: with ``source_rows`` (None: the source had no callback for that record).
    acks: list[Callable[[], Awaitable[None]] | None] = field(default_factory=list)

