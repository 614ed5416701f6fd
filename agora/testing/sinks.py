"""A sink that rejects chosen records, for testing how a job handles sink failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agora import BaseSink, DataPlane, MemorySink, SinkCapabilities, WriteResult
from agora.testing.faults import InjectedFault, record_ids


class FlakySink(BaseSink):
    """Delegates to ``inner`` (default: a fresh ``MemorySink``) but fails the records
    whose ``id`` is in ``fail_on``.

    ``whole_call=False``: each such record gets ``WriteResult.failed(InjectedFault)`` and
    the others are written (Arrow batches are filtered and passed on as Arrow).
    ``whole_call=True``: a call holding such a record raises ``InjectedFault`` and writes
    nothing. ``delay_s`` makes every write call block that long (a slow sink, so a kill
    from outside lands mid-run). ``on_event`` is called with ``"sink_write"`` after each
    delegated write and ``"sink_flush"`` after each flush (e.g. to crash there). Declares
    the inner sink's data planes.
    """

    def __init__(self, inner: BaseSink | None = None, *, fail_on: Iterable[int] = (),
                 whole_call: bool = False, delay_s: float = 0.0,
                 on_event: Callable[[str], None] | None = None, name: str | None = None) -> None:
        self.inner = inner if inner is not None else MemorySink()
        self.fail_on = frozenset(int(i) for i in fail_on)
        self.whole_call = whole_call
        self.delay_s = delay_s
        self.on_event = on_event
        self.sink_name = name or f"flaky({self.inner.sink_name})"

    def sink_capabilities(self) -> SinkCapabilities:
        spec = self.inner.data_plane_spec()
        order = list(DataPlane)
        return SinkCapabilities(
            accepted_data_planes=tuple(p for p in order if p in spec.accepted_planes),
            native_data_planes=tuple(p for p in order if p in spec.native_planes),
        )

    def _event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)

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
        self._event("sink_write")

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        self._slow()
        ids = record_ids(records)
        bad = [i for i, rid in enumerate(ids) if rid in self.fail_on]
        if bad and self.whole_call:
            raise self._error(ids[bad[0]])
        keep = [r for r, rid in zip(records, ids, strict=True) if rid not in self.fail_on]
        inner = await self.inner.write_batch(keep) if keep else None
        self._event("sink_write")
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
            id_type = batch.column("id").type
            mask = pc.invert(pc.is_in(batch.column("id"), pa.array(sorted(self.fail_on), id_type)))
            keep = batch.filter(mask)
        inner = await self.inner.write_arrow_batch(keep) if keep.num_rows else None
        self._event("sink_write")
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
        self._event("sink_flush")

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            await super().close()
