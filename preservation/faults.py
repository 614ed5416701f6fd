"""Named fault injectors for the preservation suite: sinks, DLQs and checkpoint stores
that fail or kill the driver at a chosen point, and picklable batch transforms that
sleep, raise, kill or crash the worker process running them.

Every injector says what fails and when. Records are identified by their ``id`` field
(an int, or its text form when a CSV source read it), so a fault can target records
however the lane carries them: a dict, a ``list[dict]`` or a ``pyarrow.RecordBatch``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import time
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agora import (
    BaseSink,
    BaseSource,
    Checkpoint,
    CheckpointStore,
    DataPlane,
    SinkCapabilities,
    SourceDataPlaneSpec,
    WriteResult,
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
    "SleepyTransform",
    "record_ids",
]

#: Environment variable naming the driver's crash point, e.g. ``"sink_write:7"``.
CRASH_ENV = "AGORA_PRESERVATION_CRASH"


class InjectedFault(RuntimeError):
    """Raised by every injector, so a test can tell an injected failure from a real one."""


# -- record identity ----------------------------------------------------------------------


def record_ids(data: Any) -> list[int]:
    """The ``id`` of every record in ``data`` (a dict, a list of dicts, or a RecordBatch)."""
    if isinstance(data, pa.RecordBatch):
        return [int(v) for v in data.column("id").to_pylist()]
    if isinstance(data, dict):
        return [int(data["id"])]
    return [int(r["id"]) for r in data]


def _batch_keys(batch: int | Collection[int]) -> frozenset[int]:
    return frozenset([batch] if isinstance(batch, int) else batch)


class _Trigger:
    """Fires on a batch holding one of ``ids``, or whose first id // ``batch_size`` is in
    ``batch`` (batches of a fixed size, numbered from 0 in source order)."""

    def __init__(self, *, ids: Iterable[int] = (), batch: int | Collection[int] = (),
                 batch_size: int | None = None) -> None:
        self.ids = frozenset(ids)
        self.batches = _batch_keys(batch)
        if self.batches and not batch_size:
            raise ValueError(f"{type(self).__name__}(batch=...) needs batch_size")
        self.batch_size = batch_size or 1

    def fires(self, data: Any) -> bool:
        ids = record_ids(data)
        if not ids:
            return False
        if self.batches and ids[0] // self.batch_size in self.batches:
            return True
        return not self.ids.isdisjoint(ids)

    def __repr__(self) -> str:
        what = f"batch={sorted(self.batches)}" if self.batches else f"ids={sorted(self.ids)}"
        return f"{type(self).__name__}({what})"


# -- worker-side transforms (picklable; run by process-isolated middleware) ---------------


class Identity:
    """Returns its input unchanged (rows or an Arrow batch)."""

    def __call__(self, data: Any) -> Any:
        return data


class Chain:
    """Applies several transforms in order: ``Chain(KillWorkerOn(...), SleepyTransform(...))``."""

    def __init__(self, *steps: Any) -> None:
        self.steps = steps

    def __call__(self, data: Any) -> Any:
        for step in self.steps:
            data = step(data)
        return data

    def __repr__(self) -> str:
        return f"Chain{self.steps!r}"


class SleepyTransform(_Trigger):
    """Sleeps ``seconds`` on the batches it fires on (all batches if no target is given),
    then returns the input. With ``log_dir`` it writes ``started-<first id>`` when it
    starts and appends ``<first id>`` to ``done.log`` when it returns, so a test can see
    which batch a worker was in and in which order batches really finished."""

    def __init__(self, seconds: float, *, log_dir: str | os.PathLike[str] | None = None,
                 **target: Any) -> None:
        super().__init__(**target)
        self.seconds = seconds
        self.everywhere = not self.ids and not self.batches
        self.log_dir = None if log_dir is None else os.fspath(log_dir)

    def __call__(self, data: Any) -> Any:
        ids = record_ids(data)
        first = ids[0] if ids else -1
        if self.log_dir is not None:
            Path(self.log_dir, f"started-{first}").touch()
        if self.everywhere or self.fires(data):
            time.sleep(self.seconds)
        if self.log_dir is not None:
            fd = os.open(Path(self.log_dir, "done.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, f"{first}\n".encode())
            finally:
                os.close(fd)
        return data


class DropOn(_Trigger):
    """A row-lane batch function that drops (returns None for) the records in ``ids``."""

    def __call__(self, data: Any) -> Any:
        return [None if int(r["id"]) in self.ids else r for r in data]


class KillWorkerOn(_Trigger):
    """SIGKILLs the worker process on the batches it fires on.

    ``once_dir`` set: only the first attempt dies (an ``O_EXCL`` marker file per batch
    remembers it across processes), so the batch succeeds when re-run — an innocent
    bystander of a pool break. ``once_dir`` unset: it dies every time — a poison batch.
    """

    def __init__(self, *, once_dir: str | os.PathLike[str] | None = None, **target: Any) -> None:
        super().__init__(**target)
        self.once_dir = None if once_dir is None else os.fspath(once_dir)

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            if self.once_dir is None or _first_time(self.once_dir, record_ids(data)[0]):
                os.kill(os.getpid(), signal.SIGKILL)
        return data


def _first_time(directory: str, key: int) -> bool:
    try:
        os.close(os.open(Path(directory, f"killed-{key}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class SegfaultOn(_Trigger):
    """Crashes the worker with a real SIGSEGV on the batches it fires on, every time."""

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            faulthandler.disable()  # die by the signal itself, without a traceback dump
            faulthandler._sigsegv()
        return data


class ExitWorkerOn(_Trigger):
    """Ends the worker with ``os._exit(code)`` on the batches it fires on, every time."""

    def __init__(self, code: int = 3, **target: Any) -> None:
        super().__init__(**target)
        self.code = code

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            os._exit(self.code)
        return data


class RaiseOn(_Trigger):
    """Raises ``InjectedFault(message)`` on the batches (or records) it fires on.

    Used as a batch function it fails the whole batch; used per record (``MapMiddleware``)
    it fails that record only."""

    def __init__(self, message: str = "injected failure", **target: Any) -> None:
        super().__init__(**target)
        self.message = message

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            raise InjectedFault(f"{self.message} (ids {record_ids(data)[:3]}...)")
        return data


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


class FlakySink(BaseSink):
    """Delegates to ``inner`` but fails the records whose id is in ``fail_on``.

    ``whole_call=False``: each such record gets ``WriteResult.failed(InjectedFault)`` and
    the others are written (Arrow batches are filtered and passed on as Arrow).
    ``whole_call=True``: a call holding such a record raises ``InjectedFault`` and writes
    nothing. ``delay_s`` makes every write call that long (a slow sink, so that a kill
    from outside lands mid-run). Declares the inner sink's planes. ``crash`` is told
    ``sink_write`` after each delegated call and ``sink_flush`` after each flush.
    """

    def __init__(self, inner: BaseSink, *, fail_on: Iterable[int] = (), whole_call: bool = False,
                 delay_s: float = 0.0, crash: CrashPoint = NEVER, name: str | None = None) -> None:
        self.inner = inner
        self.fail_on = frozenset(fail_on)
        self.whole_call = whole_call
        self.delay_s = delay_s
        self.crash = crash
        self.sink_name = name or f"flaky({inner.sink_name})"

    def sink_capabilities(self) -> SinkCapabilities:
        spec = self.inner.data_plane_spec()
        order = list(DataPlane)
        return SinkCapabilities(
            accepted_data_planes=tuple(p for p in order if p in spec.accepted_planes),
            native_data_planes=tuple(p for p in order if p in spec.native_planes),
        )

    def _slow(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)  # blocking on purpose: the whole driver is slow

    def _error(self, rid: int) -> InjectedFault:
        return InjectedFault(f"sink {self.sink_name!r} rejects record id={rid}")

    def resume_output(self) -> None:
        super().resume_output()
        self.inner.resume_output()

    async def open(self) -> None:
        await self.inner.open()
        await super().open()

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._slow()
        (rid,) = record_ids(record)
        if rid in self.fail_on:
            raise self._error(rid)
        await self.inner.write(record)
        self.crash.hit("sink_write")

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        self._slow()
        ids = record_ids(records)
        bad = [i for i, rid in enumerate(ids) if rid in self.fail_on]
        if bad and self.whole_call:
            raise self._error(ids[bad[0]])
        keep = [r for r, rid in zip(records, ids) if rid not in self.fail_on]
        inner = await self.inner.write_batch(keep) if keep else None
        self.crash.hit("sink_write")
        return self._merge(ids, inner) if bad or inner is not None else None

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        self._slow()
        ids = record_ids(batch)
        bad = [i for i, rid in enumerate(ids) if rid in self.fail_on]
        if bad and self.whole_call:
            raise self._error(ids[bad[0]])
        keep = batch
        if bad:
            mask = pc.invert(pc.is_in(batch.column("id"), pa.array(sorted(self.fail_on),
                                                                    batch.column("id").type)))
            keep = batch.filter(mask)
        inner = await self.inner.write_arrow_batch(keep) if keep.num_rows else None
        self.crash.hit("sink_write")
        return self._merge(ids, inner) if bad or inner is not None else None

    def _merge(self, ids: list[int], inner: list[WriteResult] | None) -> list[WriteResult]:
        passed = iter(inner) if inner is not None else None
        out = []
        for rid in ids:
            if rid in self.fail_on:
                out.append(WriteResult.failed(self._error(rid)))
            else:
                out.append(next(passed) if passed is not None else WriteResult.ok())
        return out

    async def flush(self) -> None:
        self._check_usable("flush")
        await self.inner.flush()
        self.crash.hit("sink_flush")

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            await super().close()


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
