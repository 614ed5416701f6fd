"""Named fault injectors for the preservation suite: a sink that rejects records (and can
be slow), a DLQ that fails or lies, crash points that SIGKILL the driver at a chosen
moment, and a source that paces its batches. The worker-side transforms, ``FlakySink``
and ``InjectedFault`` come from :mod:`agora.testing` and are re-exported here, so tests
import every injector from one place.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pyarrow as pa

from agora import (
    BaseSink,
    BaseSource,
    Checkpoint,
    CheckpointStore,
    DataPlane,
    SourceDataPlaneSpec,
)
from agora.testing import (
    Chain,
    DropOn,
    ExitWorkerOn,
    FlakySink,
    Identity,
    InjectedFault,
    KillWorkerOn,
    RaiseOn,
    SegfaultOn,
    ShortResultOn,
    SleepyTransform,
    WaitForFile,
    record_ids,
)

__all__ = [
    "CRASH_ENV",
    "Chain",
    "CrashPoint",
    "CrashingCheckpointStore",
    "DropOn",
    "ExitWorkerOn",
    "FlakyDLQ",
    "FlakySink",
    "Identity",
    "InjectedFault",
    "KillWorkerOn",
    "PacedBatchSource",
    "RaiseOn",
    "SegfaultOn",
    "ShortResultOn",
    "SleepyTransform",
    "WaitForFile",
    "record_ids",
]

#: Environment variable naming the driver's crash point, e.g. ``"sink_write:7"``.
CRASH_ENV = "AGORA_PRESERVATION_CRASH"


# -- driver crash points ------------------------------------------------------------------


class CrashPoint:
    """SIGKILLs this process the ``count``-th time the named point is hit.

    Points: ``sink_write`` (after a sink call returned; data may sit in a buffer),
    ``sink_flush`` (sinks durable, DLQ and checkpoint not yet), ``dlq_write`` (DLQ rows
    buffered, not durable), ``dlq_flush`` (DLQ durable, checkpoint not yet saved),
    ``checkpoint_save`` (right after a durable save). ``CrashPoint.from_env()`` reads
    ``"<point>:<count>"`` from ``AGORA_PRESERVATION_CRASH``; unset means never.
    """

    POINTS = ("sink_write", "sink_flush", "dlq_write", "dlq_flush", "checkpoint_save")

    def __init__(self, point: str | None = None, count: int = 1) -> None:
        if point is not None and point not in self.POINTS:
            raise ValueError(f"unknown crash point {point!r}; expected one of {self.POINTS}")
        if count < 1:
            raise ValueError(f"crash count must be >= 1; got {count}")
        self.point = point
        self.count = count
        self.hits = 0

    @classmethod
    def from_env(cls) -> CrashPoint:
        spec = os.environ.get(CRASH_ENV, "")
        if not spec:
            return cls()
        point, _, count = spec.partition(":")
        return cls(point, int(count or 1))

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits >= self.count:
            os.kill(os.getpid(), signal.SIGKILL)


NEVER = CrashPoint()


# -- sinks and stores ---------------------------------------------------------------------


class FlakyDLQ(BaseSink):
    """A DLQ that delegates to a real DLQ sink, optionally failing: ``fail_writes`` makes
    ``write_batch`` raise, ``fail_flush`` makes ``flush`` raise (rows buffered but never
    made durable), ``skip_flush`` makes ``flush`` return without committing (a DLQ that
    lies about durability — used to prove the audit would notice). ``crash`` is told
    ``dlq_write`` / ``dlq_flush`` after each success."""

    def __init__(self, inner: BaseSink, *, fail_writes: bool = False, fail_flush: bool = False,
                 skip_flush: bool = False, crash: CrashPoint = NEVER) -> None:
        self.inner = inner
        self.fail_writes = fail_writes
        self.fail_flush = fail_flush
        self.skip_flush = skip_flush
        self.crash = crash
        self.sink_name = f"flaky({inner.sink_name})"
        self.buffered: list[Any] = []

    async def open(self) -> None:
        await self.inner.open()
        await super().open()

    async def write(self, record: Any) -> None:
        await self.write_batch([record])

    async def write_batch(self, records: Sequence[Any]) -> None:
        self._check_usable("write_batch")
        if self.fail_writes:
            raise InjectedFault(f"DLQ {self.sink_name!r} is down")
        if self.fail_flush:
            # Accepted into a buffer that will never be committed: the rows are lost
            # unless the runtime refuses to treat a buffered row as captured.
            self.buffered.extend(records)
            return
        await self.inner.write_batch(records)
        self.crash.hit("dlq_write")

    async def flush(self) -> None:
        self._check_usable("flush")
        if self.fail_flush and self.buffered:
            raise InjectedFault(f"DLQ {self.sink_name!r} cannot commit {len(self.buffered)} row(s)")
        if self.skip_flush:
            return  # claims success while the rows still sit in the inner DLQ's buffer
        await self.inner.flush()
        self.crash.hit("dlq_flush")

    async def close(self) -> None:
        """Closes the inner DLQ; still raises if rows could never be committed."""
        try:
            await self.inner.close()
        finally:
            await super().close()
        if self.fail_flush and self.buffered:
            raise InjectedFault(f"DLQ {self.sink_name!r} lost {len(self.buffered)} row(s)")


class CrashingCheckpointStore(CheckpointStore):
    """Delegates to ``inner``; tells ``crash`` ``checkpoint_save`` after each durable save."""

    def __init__(self, inner: CheckpointStore, crash: CrashPoint) -> None:
        self.inner = inner
        self.crash = crash

    def open(self) -> None:
        self.inner.open()

    def load(self, key: str) -> Checkpoint | None:
        return self.inner.load(key)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.inner.save(key, checkpoint)
        self.crash.hit("checkpoint_save")

    def reset(self, key: str) -> bool:
        return self.inner.reset(key)

    def list_keys(self) -> list[str]:
        return self.inner.list_keys()

    def close(self) -> None:
        self.inner.close()


# -- sources --------------------------------------------------------------------------------


class PacedBatchSource(BaseSource):
    """Emits the given batches (``list[dict]`` or ``RecordBatch``), awaiting
    ``delays[k]`` seconds before batch k without blocking the event loop — so a test can
    place batch submissions far apart in time. Checkpoint: batches emitted."""

    supports_checkpoint = True

    def __init__(self, batches: Sequence[Any], *, delays: dict[int, float] | None = None,
                 name: str = "paced") -> None:
        self.batches = list(batches)
        self.delays = dict(delays or {})
        self.source_name = name
        self.pos = 0
        arrow = bool(self.batches) and isinstance(self.batches[0], pa.RecordBatch)
        self.plane = DataPlane.ARROW_BATCHES if arrow else DataPlane.PYTHON_BATCHES

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, self.plane)

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        self.pos = 0 if checkpoint is None else int(checkpoint.value)

    def current_checkpoint(self) -> int:
        return self.pos

    async def _gen(self) -> AsyncIterator[Any]:
        while self.pos < len(self.batches):
            delay = self.delays.get(self.pos, 0.0)
            if delay:
                await asyncio.sleep(delay)
            batch = self.batches[self.pos]
            self.pos += 1
            yield batch

    def stream_batches(self) -> AsyncIterator[Any]:
        return self._gen()
