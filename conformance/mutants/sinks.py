"""Deliberately broken sinks: each breaks exactly one rule of contract §4/§7 (named in its
docstring) and is otherwise the reference sink it subclasses."""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from conformance._agora import BaseSink, DataPlane, WriteResult
from conformance.mutants.reference import (
    ArrowJsonFileSink,
    JsonFileSink,
    ReferenceSinkHarness,
    encode_line,
)

__all__ = [
    "ClaimsArrowWithoutImplementing",
    "CloseNotIdempotent",
    "DropsBufferOnClose",
    "DropsRecordSilently",
    "DuplicatesRecord",
    "EmptyBatchWritesPlaceholder",
    "FlushIsNoop",
    "InvalidPlaneDeclaration",
    "LeaksFileOnFailure",
    "MutatesInput",
    "NaNBecomesNull",
    "OneResultShort",
    "PhantomOnOpen",
    "RaisesAfterPartialWrite",
    "ReordersBatch",
    "ReturnsValueFromWrite",
    "RowsOnlyAcceptsArrow",
    "SliceBlindArrow",
    "TruncatesOnReopen",
    "WriteAfterCloseAccepted",
    "WrongFailureIndex",
    "AcceptsWritesBeforeOpen",
    "DropsEverySecondWrite",
    "DropsEverySecondWriteOwnHarness",
    "HardCodedParentHarness",
    "KeepsCallerList",
    "MisuseErrorNamesNoSink",
    "SinkWithHardCodedHarness",
]


class DropsBufferOnClose(JsonFileSink):
    """Breaks "close() implies flush()": close() discards what is still buffered."""

    async def close(self) -> None:
        self._buffer.clear()
        await super().close()


class DuplicatesRecord(JsonFileSink):
    """Breaks "each record persisted once": the first record of every batch is written twice."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        lines, results = self.encode_all(records)
        self._buffer.extend(lines[:1] + lines)
        return results


class DropsRecordSilently(JsonFileSink):
    """Breaks "None means all written": the third record of a batch is dropped, yet the
    call reports success."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        lines, results = self.encode_all(records)
        if results is None and len(lines) >= 3:
            del lines[2]
        self._buffer.extend(lines)
        return results


class ReordersBatch(JsonFileSink):
    """Breaks write order: each batch is persisted in reverse."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        lines, results = self.encode_all(records)
        self._buffer.extend(reversed(lines))
        return results


class OneResultShort(JsonFileSink):
    """Breaks "exactly one WriteResult per input": the result list misses the last entry."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        results = await super().write_batch(records)
        full = results if results is not None else [WriteResult.ok() for _ in records]
        return full[:-1] if full else full


class MutatesInput(JsonFileSink):
    """Breaks "inputs are never mutated": marks each caller record after encoding it."""

    async def write(self, record: Any) -> None:
        await super().write(record)
        record["_seen_by_sink"] = True

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        results = await super().write_batch(records)
        for record in records:
            if isinstance(record, dict):
                record["_seen_by_sink"] = True
        return results


class SliceBlindArrow(ArrowJsonFileSink):
    """Breaks Arrow slices: rebuilds columns from the raw buffers, ignoring the offset."""

    def rows_of(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        columns = [
            pa.Array.from_buffers(col.type, len(col), col.buffers(), offset=0)
            for col in batch.columns
        ]
        rows: list[dict[str, Any]] = pa.RecordBatch.from_arrays(
            columns, schema=batch.schema
        ).to_pylist()
        return rows


class NaNBecomesNull(ArrowJsonFileSink):
    """Breaks the Arrow round trip: NaN in a float column is persisted as null."""

    def rows_of(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        return [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in batch.to_pylist()
        ]


class CloseNotIdempotent(JsonFileSink):
    """Breaks "close() is idempotent": a second close raises."""

    async def close(self) -> None:
        if self.state.value == "closed":
            raise RuntimeError(f"sink {self.sink_name!r} is already closed")
        await super().close()


class PhantomOnOpen(JsonFileSink):
    """Breaks "no phantom output": open() writes a placeholder record."""

    async def open(self) -> None:
        await super().open()
        self._buffer.append("{}")


class EmptyBatchWritesPlaceholder(JsonFileSink):
    """Breaks "an empty batch persists nothing": it writes a placeholder record."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        if not records:
            self._check_usable("write_batch")
            self._buffer.append("{}")
            return None
        return await super().write_batch(records)


class RowsOnlyAcceptsArrow(JsonFileSink):
    """Breaks honest declarations: rows-only, yet write_arrow_batch silently accepts."""

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        return await self.write_batch(batch.to_pylist())


class ClaimsArrowWithoutImplementing(JsonFileSink):
    """Breaks honest declarations: declares arrow_batches native, keeps the base
    write_arrow_batch (which refuses RecordBatches)."""

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = tuple(DataPlane)
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = tuple(DataPlane)


class InvalidPlaneDeclaration(JsonFileSink):
    """Breaks "native ⊆ accepted": declares Arrow native but accepts rows only."""

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = (DataPlane.PYTHON_ROWS,)
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.ARROW_BATCHES,
    )


class FlushIsNoop(JsonFileSink):
    """Breaks "flush() makes writes durable": flush() keeps everything buffered (only close
    writes), so a checkpoint can be saved over records that are not persisted."""

    async def flush(self) -> None:
        self._check_usable("flush")

    async def close(self) -> None:
        if self.state.value == "open":
            await super().flush()
        await super().close()


class WrongFailureIndex(JsonFileSink):
    """Breaks "results in input order": a failure is reported at index 0, not where it was."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        results = await super().write_batch(records)
        if results is None:
            return None
        failed = [r for r in results if not r.written]
        return failed + [r for r in results if r.written]


class RaisesAfterPartialWrite(JsonFileSink):
    """Breaks "an exception means the whole call failed": keeps the valid records of a
    batch, then raises for the whole batch."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        results = await super().write_batch(records)
        if results is not None:
            raise ValueError(f"sink {self.sink_name!r}: a record of this batch was invalid")
        return results


class ReturnsValueFromWrite(JsonFileSink):
    """Breaks "write() returns None or raises": returns True."""

    async def write(self, record: Any) -> Any:
        await super().write(record)
        return True


_LEAKED: list[int] = []


@atexit.register
def _close_leaked() -> None:  # keep the test process tidy after demonstrating the leak
    while _LEAKED:
        try:
            os.close(_LEAKED.pop())
        except OSError:
            pass


class LeaksFileOnFailure(JsonFileSink):
    """Breaks "a failed write does not leak resources": every failing write opens a scratch
    file next to the output and never closes it."""

    def _leak(self) -> None:
        _LEAKED.append(os.open(self.path.with_suffix(".scratch"), os.O_CREAT | os.O_WRONLY, 0o600))

    async def write(self, record: Any) -> None:
        try:
            await super().write(record)
        except Exception:
            self._leak()
            raise

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        try:
            results = await super().write_batch(records)
        except Exception:
            self._leak()
            raise
        if results is not None:
            self._leak()
        return results


class TruncatesOnReopen(JsonFileSink):
    """Breaks "a resumed or reopened sink continues its output": every open() truncates."""

    async def open(self) -> None:
        await BaseSink.open(self)
        self._fh = self.path.open("w", encoding="utf-8")  # always starts its output over


class WriteAfterCloseAccepted(JsonFileSink):
    """Breaks "a write that returns without error is persisted": writes after close() return
    None (acknowledged) and are silently dropped."""

    async def write(self, record: Any) -> None:
        if self.state.value == "closed":
            return None
        await super().write(record)

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        if self.state.value == "closed":
            return None
        return await super().write_batch(records)

    async def flush(self) -> None:
        if self.state.value == "closed":
            return None
        await super().flush()


class AcceptsWritesBeforeOpen(JsonFileSink):
    """Breaks "a write that returns without error is persisted": writes before open()
    return None and are dropped (open() starts the output over)."""

    async def write(self, record: Any) -> None:
        if self.state.value == "new":
            return None
        await super().write(record)

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        if self.state.value == "new":
            return None
        return await super().write_batch(records)


class MisuseErrorNamesNoSink(JsonFileSink):
    """Breaks only a SHOULD (lifecycle misuse raises an error naming the sink): after
    close() writes raise a bare RuntimeError. Every MUST holds — nothing is acknowledged
    and lost."""

    def _check_usable(self, op: str) -> None:
        if self.state.value == "closed":
            raise RuntimeError("closed")
        super()._check_usable(op)


class KeepsCallerList(JsonFileSink):
    """Breaks "persisted data does not change with the caller's later mutation": it
    validates records when they are written (results and order stay right) but keeps the
    caller's list and dicts, and encodes them only at flush()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[tuple[Sequence[Any], list[bool]]] = []

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        encode_line(record)  # refuses a bad record now, as the reference does
        self._held.append(([record], [True]))

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        _, results = self.encode_all(records)
        ok = [True] * len(records) if results is None else [r.written for r in results]
        self._held.append((records, ok))  # a reference to the caller's list, not a copy
        return results

    async def flush(self) -> None:
        self._check_usable("flush")
        held, self._held = self._held, []
        for records, ok in held:
            for record, good in zip(records, ok, strict=False):
                if good:
                    self._buffer.append(encode_line(record))
        await super().flush()


class HardCodedParentHarness(ReferenceSinkHarness):
    """A harness that ignores ``self.target`` and always builds the parent class — the
    pattern that made a subclass get the parent's verdict."""

    def build(self, ns: Any) -> Any:
        return JsonFileSink(self.path(ns))


class SinkWithHardCodedHarness(JsonFileSink):
    """A correct sink whose harness hard-codes its class (harmless for itself)."""

    __conformance_harness__ = "conformance.mutants.sinks:HardCodedParentHarness"


class DropsEverySecondWrite(SinkWithHardCodedHarness):
    """Breaks "None means all written" — every second write() is dropped — and inherits a
    harness that builds the parent: the suite must refuse to test the parent in its
    place (a usage error naming both classes)."""

    _count = 0

    async def write(self, record: Any) -> None:
        self._count += 1
        if self._count % 2 == 0:
            self._check_usable("write")
            return None
        await super().write(record)


class DropsEverySecondWriteOwnHarness(JsonFileSink):
    """Breaks "None means all written" like DropsEverySecondWrite, but under a correct
    inherited harness (``self.target``): the subclass is what gets built, and the
    integrity checks catch it."""

    _count = 0

    async def write(self, record: Any) -> None:
        self._count += 1
        if self._count % 2 == 0:
            self._check_usable("write")
            return None
        await super().write(record)
