"""``MemorySink``: keeps everything it receives in memory, for tests and as a DLQ sink."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from agora.planes import DataPlane
from agora.records import WriteResult
from agora.sinks.base import BaseSink, SinkState

__all__ = ["MemorySink"]

_ALL_PLANES = (DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES, DataPlane.ARROW_BATCHES)


class MemorySink(BaseSink):
    """Collects rows, Python batches and Arrow batches; native on all three planes.

    What a test can read after (or during) a run:

    * ``records`` — every record in arrival order, whatever plane it came on. Rows of an
      Arrow batch are expanded here too (``batch.to_pylist()``), so one view covers every
      plane. Mappings are stored as shallow copies (``dict(record)``): changing the caller's
      dict afterwards does not change what was recorded. Anything else (for example a frozen
      :class:`~agora.records.DLQRecord` when used as a DLQ) is stored as is.
    * ``batches`` — each Python batch as received (a new list of the copied records).
    * ``arrow_batches`` — each ``RecordBatch`` as received (immutable, kept by reference).
    * ``write_calls`` / ``batch_calls`` / ``arrow_batch_calls`` / ``flush_calls`` counters.
    * ``flushed`` — True when everything received so far has been flushed (a write after a
      flush sets it back to False); ``closed`` — True after ``close()``.

    Lifecycle misuse raises :class:`~agora.errors.LifecycleError` naming the sink.
    """

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = _ALL_PLANES
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = _ALL_PLANES

    def __init__(self, name: str = "memory") -> None:
        self.sink_name = name
        self.records: list[Any] = []
        self.batches: list[list[Any]] = []
        self.arrow_batches: list[pa.RecordBatch] = []
        self.write_calls = 0
        self.batch_calls = 0
        self.arrow_batch_calls = 0
        self.flush_calls = 0
        self.flushed = False
        self.opened = False  # True once open() succeeded; stays True after close()

    @property
    def closed(self) -> bool:
        return self._state is SinkState.CLOSED

    async def open(self) -> None:
        await super().open()
        self.opened = True

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self.write_calls += 1
        self.records.append(_copy(record))
        self.flushed = False

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        self.batch_calls += 1
        copied = [_copy(record) for record in records]
        self.batches.append(copied)
        self.records.extend(copied)
        self.flushed = False
        return None

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(
                f"sink {self.sink_name!r}: write_arrow_batch() needs a pyarrow.RecordBatch; "
                f"got {type(batch).__name__}"
            )
        self.arrow_batch_calls += 1
        self.arrow_batches.append(batch)
        self.records.extend(batch.to_pylist())
        self.flushed = False
        return None

    async def flush(self) -> None:
        self._check_usable("flush")
        self.flush_calls += 1
        self.flushed = True

    async def close(self) -> None:
        """Flush (if open) and close. Idempotent; closing an unopened sink is allowed."""
        if self._state is SinkState.OPEN:
            await self.flush()
        await super().close()


def _copy(record: Any) -> Any:
    # A shallow copy is enough to stop a caller that reuses or edits its dict from
    # rewriting history; deep copies would make a test sink cost more than the pipeline.
    if isinstance(record, Mapping):
        return dict(record)
    return record
