"""Test doubles for runtime tests, named for what they do."""

from __future__ import annotations

from typing import Any

from agora import BaseSink, BaseSource, DataPlane, WriteResult
from agora.planes import SourceDataPlaneSpec


class RecordingSource(BaseSource):
    """Row or batch source over a list, recording lifecycle calls into ``log``.

    ``fail_at=k`` raises ``OSError`` when unit k would be emitted. ``pulled`` counts
    units actually pulled (to prove max_records never over-reads)."""

    supports_checkpoint = True

    def __init__(self, units: list[Any], *, plane: DataPlane = DataPlane.PYTHON_ROWS,
                 log: list[str] | None = None, name: str = "recording",
                 fail_at: int | None = None, fail_open: bool = False) -> None:
        self.units = units
        self.plane = plane
        self.log = log if log is not None else []
        self.source_name = name
        self.fail_at = fail_at
        self.fail_open = fail_open
        self.pos = 0
        self.pulled = 0
        self.resumed_from: Any = "never"

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, self.plane)

    async def prepare_resume(self, checkpoint: Any) -> None:
        self.log.append("source.prepare_resume")
        self.resumed_from = None if checkpoint is None else checkpoint.value
        self.pos = 0 if checkpoint is None else int(checkpoint.value)

    async def open(self) -> None:
        self.log.append("source.open")
        if self.fail_open:
            raise OSError("source open failed")

    async def close(self) -> None:
        self.log.append("source.close")

    def current_checkpoint(self) -> Any:
        return self.pos

    async def _gen(self):
        while self.pos < len(self.units):
            if self.fail_at is not None and self.pos == self.fail_at:
                raise OSError(f"source read failed at unit {self.pos}")
            unit = self.units[self.pos]
            self.pulled += 1
            self.pos += 1
            yield unit

    def stream(self):
        return self._gen()

    def stream_batches(self):
        return self._gen()

    def checkpoint_within_last_batch(self, rows: int) -> Any:
        return self.pos - 1 + rows / 1000  # deliberately distinguishable: "inside" a batch


class FlakySink(BaseSink):
    """Collects rows; fails records for which ``fail(record)`` is true.

    ``mode="results"`` reports failures as WriteResults from write_batch;
    ``mode="raise"`` raises from the whole call. Records every lifecycle call in ``log``."""

    def __init__(self, *, name: str = "flaky", fail=lambda r: False, mode: str = "results",
                 log: list[str] | None = None, native: tuple[DataPlane, ...] = (
                     DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES),
                 fail_open: bool = False, fail_flush: bool = False, fail_close: bool = False) -> None:
        self.sink_name = name
        self.fail = fail
        self.mode = mode
        self.log = log if log is not None else []
        self._native = native
        self.fail_open = fail_open
        self.fail_flush = fail_flush
        self.fail_close = fail_close
        self.rows: list[Any] = []
        self.flushed_count = 0  # rows durable at the last flush
        self.arrow_calls = 0
        self.batch_calls = 0
        self.row_calls = 0

    def sink_capabilities(self):
        from agora import SinkCapabilities
        return SinkCapabilities(accepted_data_planes=self._native, native_data_planes=self._native)

    async def open(self) -> None:
        self.log.append(f"{self.sink_name}.open")
        if self.fail_open:
            raise OSError(f"{self.sink_name} open failed")
        await super().open()

    async def write(self, record: Any) -> None:
        self.row_calls += 1
        if self.fail(record):
            raise ValueError(f"{self.sink_name} rejects {record!r}")
        self.rows.append(record)

    async def write_batch(self, records):
        self.batch_calls += 1
        if self.mode == "raise" and any(self.fail(r) for r in records):
            raise OSError(f"{self.sink_name} batch write failed")
        out = []
        for r in records:
            if self.fail(r):
                out.append(WriteResult.failed(ValueError(f"{self.sink_name} rejects {r!r}")))
            else:
                self.rows.append(r)
                out.append(WriteResult.ok())
        return out

    async def write_arrow_batch(self, batch):
        self.arrow_calls += 1
        return await self.write_batch(batch.to_pylist())

    async def flush(self) -> None:
        self.log.append(f"{self.sink_name}.flush")
        if self.fail_flush:
            raise OSError(f"{self.sink_name} flush failed")
        self.flushed_count = len(self.rows)

    async def close(self) -> None:
        self.log.append(f"{self.sink_name}.close")
        if self.fail_close:
            raise OSError(f"{self.sink_name} close failed")
        await self.flush()
        await super().close()


class FailingDLQ(FlakySink):
    """A DLQ whose writes always raise."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(name="failing_dlq", **kw)

    async def write_batch(self, records):
        raise OSError("dlq is down")


class RecordingStore:
    """In-memory checkpoint store that records saves (and can fail them)."""

    def __init__(self, *, fail_save: bool = False, log: list[str] | None = None) -> None:
        self.data: dict[str, Any] = {}
        self.saves: list[Any] = []
        self.fail_save = fail_save
        self.log = log if log is not None else []

    def open(self) -> None:
        self.log.append("store.open")

    def load(self, key: str):
        self.log.append("store.load")
        return self.data.get(key)

    def save(self, key: str, checkpoint) -> None:
        if self.fail_save:
            raise OSError("checkpoint disk full")
        self.log.append("store.save")
        self.data[key] = checkpoint
        self.saves.append(checkpoint.value)

    def close(self) -> None:
        self.log.append("store.close")
