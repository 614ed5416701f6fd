"""The records the engine passes between its boxes: a ``Unit`` is one source emission
(a record group on the row lane, a batch on the batch lanes, or a malformed-record
marker) together with everything that happened to it on the way to the commit, and the
``Admission`` that bounds how many units are held between the source and the commit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from agora.records import DLQStage, MalformedRecord

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["GONE", "UNKNOWN_ROWS", "Admission", "Failure", "RowMap", "Unit", "source_rows_of"]


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

    stage: DLQStage
    component: str  # middleware or sink name
    error: BaseException
    record: Any  # as the source emitted it (Arrow: the row entering the failed stage)
    processed_record: Any = None
    is_sink: bool = False
    #: I/O lane: the attempt that failed last, and the retry policy's attempt budget
    attempt: int | None = None
    max_attempts: int | None = None


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


class Admission:
    """How far the pump may run ahead of the commit: the engine's window.

    ``run`` units may be in their overlapped stages at once; ``hold`` units may be held
    uncommitted, running or finished. Process lanes hold what they run (``eager`` off:
    the pump commits the head once ``run`` units are held). An I/O lane holds more than
    it runs (``eager`` on): a finished unit gives its place to the next one at once,
    even while an earlier, slower unit keeps the commit waiting, and a finished head is
    committed as soon as the pump has a turn — so the lane's calls never wait for the
    commit, and the commit never waits for the source.
    """

    __slots__ = ("run", "hold", "eager", "running", "_wake")

    def __init__(self, *, run: int, hold: int, eager: bool) -> None:
        self.run = run
        self.hold = max(hold, run)
        self.eager = eager
        self.running = 0
        self._wake: asyncio.Future[None] | None = None

    def track(self, task: asyncio.Task[None]) -> None:
        """Count ``task`` (a unit's overlapped stages) until it finishes."""
        self.running += 1
        task.add_done_callback(self._finished)

    def has_room(self) -> bool:
        return self.running < self.run

    async def finished(self) -> None:
        """Wait until a tracked unit finishes (returns at once if one has room)."""
        if self.has_room():
            return
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self.running -= 1
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
