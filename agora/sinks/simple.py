"""``NullSink`` (discards everything, counts it) and ``StdoutSink`` (JSON lines on a text
stream, for humans and shell pipes)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar, TextIO

import pyarrow as pa

from agora.planes import DataPlane
from agora.records import WriteResult
from agora.sinks.base import BaseSink, SinkState
from agora.sinks.jsonl import encode_json_line

__all__ = ["NullSink", "StdoutSink"]

_ALL_PLANES = (DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES, DataPlane.ARROW_BATCHES)


class NullSink(BaseSink):
    """Accepts every plane natively and discards the data; ``count`` is the number of
    records (rows of Arrow batches included) it was given. Useful for benchmarks and
    dry runs. Lifecycle misuse raises :class:`~agora.errors.LifecycleError`."""

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = _ALL_PLANES
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = _ALL_PLANES

    def __init__(self, name: str = "null") -> None:
        self.sink_name = name
        self.count = 0

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self.count += 1

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        self.count += len(records)
        return None

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        self.count += batch.num_rows
        return None

    async def close(self) -> None:
        if self._state is SinkState.OPEN:
            await self.flush()
        await super().close()


class StdoutSink(BaseSink):
    """Writes one JSON line per record to ``stream`` (``sys.stdout`` at write time if None).

    Encoding is :func:`~agora.sinks.jsonl.encode_json_line` in lenient mode: the same text
    ``JsonLinesSink`` writes, except that values JSON cannot hold fall back to ``str(value)``,
    so a write never fails on an odd value. Arrow batches are written row by row.
    ``flush()`` flushes the stream; ``close()`` flushes but never closes the stream (it
    belongs to the caller). ``format`` is ``"jsonl"``, the only format in 0.3.
    """

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = _ALL_PLANES
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = _ALL_PLANES

    def __init__(self, stream: TextIO | None = None, format: str = "jsonl", *,  # noqa: A002
                 name: str = "stdout") -> None:
        self.sink_name = name
        if format != "jsonl":
            raise ValueError(
                f"sink {name!r}: format must be 'jsonl' (the only format in agora 0.3); "
                f"got {format!r}"
            )
        self.format = format
        self._stream = stream
        self.count = 0

    @property
    def stream(self) -> TextIO:
        # Resolved late so a redirected sys.stdout (pytest capture, contextlib) is honoured.
        return self._stream if self._stream is not None else sys.stdout

    def _write_lines(self, records: Sequence[Any]) -> None:
        text = "".join(encode_json_line(r, lenient=True).decode("utf-8") for r in records)
        if text:
            self.stream.write(text)
        self.count += len(records)

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._write_lines([record])

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        self._write_lines(records)
        return None

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        self._write_lines(batch.to_pylist())
        return None

    async def flush(self) -> None:
        self._check_usable("flush")
        self.stream.flush()

    async def close(self) -> None:
        if self._state is SinkState.OPEN:
            await self.flush()
        await super().close()
