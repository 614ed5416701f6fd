"""Reference components the mutants break: small, correct JSON-lines sinks and sources
(rows, Python batches, Arrow) with their harnesses. They pass every MUST check."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TextIO

import pyarrow as pa

from conformance._agora import (
    BaseSink,
    BaseSource,
    Checkpoint,
    CheckpointError,
    DataPlane,
    SourceDataPlaneSpec,
    WriteResult,
)
from conformance.data import ALL_FEATURES, BASIC_FEATURES
from conformance.harness import Namespace, SinkHarness, SourceHarness
from conformance.media import json_row

__all__ = [
    "ArrowJsonFileSink",
    "ArrowJsonFileSource",
    "BatchJsonFileSource",
    "DeepCopyMemorySink",
    "DeepCopyMemorySinkHarness",
    "JsonFileSink",
    "JsonFileSource",
    "NoCheckpointJsonFileSource",
    "ReferenceSinkHarness",
    "ReferenceSourceHarness",
    "encode_line",
]

#: Rows per emitted batch for the reference batch sources.
BATCH = 4
_FEATURES = BASIC_FEATURES | {"nan", "inf", "timestamp", "empty-str"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def encode_line(record: Any) -> str:
    """One JSON line for a mapping; raises TypeError/ValueError for records it refuses
    (non-mappings, a ``__poison__`` key, values JSON cannot hold)."""
    if not isinstance(record, Mapping):
        raise TypeError(f"records must be mappings; got {type(record).__name__}")
    if "__poison__" in record:
        raise ValueError("record carries the __poison__ key")
    return json.dumps(
        {str(k): _jsonable(v) for k, v in record.items()}, ensure_ascii=False, allow_nan=False
    )


class JsonFileSink(BaseSink):
    """Rows-only reference sink: buffers encoded lines, appends them to ``path`` on
    ``flush()``; ``close()`` flushes. Refuses bad records one by one."""

    __conformance_harness__ = "conformance.mutants.reference:ReferenceSinkHarness"
    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.PYTHON_BATCHES,
    )
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.PYTHON_BATCHES,
    )

    def __init__(self, path: str | Path, *, append: bool = False, name: str | None = None) -> None:
        self.path = Path(path)
        self.append = append
        self.sink_name = name or f"jsonfile:{self.path.name}"
        self._buffer: list[str] = []
        self._fh: TextIO | None = None

    async def open(self) -> None:
        # Continue earlier output when appending, when reopened after close(), or when the
        # runtime resumes from a checkpoint (resume_output()); start it over otherwise.
        continuing = self.append or self.state.value == "closed" or self.resuming_output
        await super().open()
        self._fh = self.path.open("a" if continuing else "w", encoding="utf-8")

    def encode_all(self, records: Sequence[Any]) -> tuple[list[str], list[WriteResult] | None]:
        lines: list[str] = []
        results: list[WriteResult] = []
        failed = False
        for record in records:
            try:
                lines.append(encode_line(record))
            except Exception as exc:  # a bad record fails alone
                failed = True
                results.append(WriteResult.failed(exc))
            else:
                results.append(WriteResult.ok())
        return lines, (results if failed else None)

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._buffer.append(encode_line(record))

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        lines, results = self.encode_all(records)
        self._buffer.extend(lines)
        return results

    async def flush(self) -> None:
        self._check_usable("flush")
        assert self._fh is not None
        if self._buffer:
            self._fh.write("".join(line + "\n" for line in self._buffer))
            self._buffer.clear()
        self._fh.flush()

    async def close(self) -> None:
        if self.state.value == "open":
            try:
                await self.flush()
            finally:
                assert self._fh is not None
                self._fh.close()
                self._fh = None
        await super().close()


class ArrowJsonFileSink(JsonFileSink):
    """Arrow-native reference sink: ``write_arrow_batch`` writes ``batch.to_pylist()``."""

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = tuple(DataPlane)
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = tuple(DataPlane)

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(f"sink {self.sink_name!r}: write_arrow_batch needs a RecordBatch")
        return await self.write_batch(self.rows_of(batch))

    def rows_of(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = batch.to_pylist()
        return rows


def _read_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line.strip()]


class ReferenceSinkHarness(SinkHarness):
    """Builds ``target(ns.path / "out.jsonl")``; reads it back with ``json``."""

    features = _FEATURES

    def path(self, ns: Namespace) -> Path:
        return ns.path / "out.jsonl"

    def build(self, ns: Namespace) -> Any:
        return self.target(self.path(ns))

    def build_append(self, ns: Namespace) -> Any:
        return self.target(self.path(ns), append=True)

    def read_back(self, ns: Namespace) -> list[Any]:
        return _read_lines(self.path(ns))

    def invalid_record(self) -> Any:
        return {"id": -1, "__poison__": True}

    def canonical_row(self, row: Any) -> Hashable:
        return json_row(row)


class JsonFileSource(BaseSource):
    """Row reference source over a JSON-lines file; checkpoint ``{"line": n, "input":
    fingerprint}`` (a checkpoint over another file is refused)."""

    __conformance_harness__ = "conformance.mutants.reference:ReferenceSourceHarness"
    supports_checkpoint = True
    plane: ClassVar[DataPlane] = DataPlane.PYTHON_ROWS

    def __init__(self, path: str | Path, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.source_name = name or f"jsonfile:{self.path.name}"
        self._fh: TextIO | None = None
        self._pos = 0
        self._last_start = 0

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, self.plane)

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        await super().prepare_resume(checkpoint)
        if checkpoint is not None:
            self._pos = self.position_from(checkpoint.value)

    def fingerprint(self) -> str:
        """Identity of the input: a digest of the file's bytes. A checkpoint carries it, so
        one taken over another file is refused instead of resumed at a meaningless line."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        return hashlib.sha256(data).hexdigest()[:16]

    def checkpoint_at(self, line: int) -> dict[str, Any]:
        """The checkpoint naming the position after ``line`` records of this input."""
        return {"line": line, "input": self.fingerprint()}

    def position_from(self, value: Any) -> int:
        if (
            not isinstance(value, dict)
            or set(value) != {"line", "input"}
            or not isinstance(value["line"], int)
        ):
            raise CheckpointError(
                f"source {self.source_name!r}: not one of its checkpoints: {value!r}"
            )
        if value["input"] != self.fingerprint():
            raise CheckpointError(
                f"source {self.source_name!r}: the checkpoint was taken over another input "
                f"(fingerprint {value['input']!r}, {self.path} has {self.fingerprint()!r}); "
                f"reset the checkpoint to read this input from the start"
            )
        return int(value["line"])

    async def open(self) -> None:
        self._fh = self.path.open(encoding="utf-8")

    async def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def current_checkpoint(self) -> Any:
        return self.checkpoint_at(self._pos)

    def checkpoint_within_last_batch(self, rows: int) -> Any:
        return self.checkpoint_at(self._last_start + rows)

    def lines(self) -> list[Any]:
        """Remaining records from the current position (reads the whole file once)."""
        assert self._fh is not None, "open() first"
        records = [json.loads(line) for line in self._fh.read().split("\n") if line.strip()]
        return records[self._pos :]

    async def stream(self) -> AsyncIterator[Any]:
        for record in self.lines():
            self._last_start = self._pos
            self._pos += 1
            yield record

    async def stream_batches(self) -> AsyncIterator[Any]:
        records = self.lines()
        self.prepare(records)
        for i in range(0, len(records), BATCH):
            chunk = records[i : i + BATCH]
            self._last_start = self._pos
            self._pos += len(chunk)
            yield self.make_batch(chunk)

    def prepare(self, records: list[dict[str, Any]]) -> None:
        """Called with every record a batch stream will emit, before the first batch."""

    def make_batch(self, rows: list[dict[str, Any]]) -> Any:
        return rows


class BatchJsonFileSource(JsonFileSource):
    """Python-batches reference source (4 rows per batch)."""

    plane: ClassVar[DataPlane] = DataPlane.PYTHON_BATCHES


class ArrowJsonFileSource(JsonFileSource):
    """Arrow reference source (4 rows per batch, schema fixed from the whole file)."""

    plane: ClassVar[DataPlane] = DataPlane.ARROW_BATCHES

    def prepare(self, records: list[dict[str, Any]]) -> None:
        self._schema = pa.Table.from_pylist(records).schema if records else None

    def make_batch(self, rows: list[dict[str, Any]]) -> Any:
        return pa.RecordBatch.from_pylist(rows, schema=self._schema)


class NoCheckpointJsonFileSource(JsonFileSource):
    """Row reference source without checkpoint support: the base ``prepare_resume``
    refuses a stored checkpoint with ``CheckpointError``."""

    supports_checkpoint = False

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        await BaseSource.prepare_resume(self, checkpoint)

    def current_checkpoint(self) -> Any:
        return None


class ReferenceSourceHarness(SourceHarness):
    """Seeds ``in.jsonl`` with ``json``; builds ``target(path)``."""

    features = BASIC_FEATURES

    def path(self, ns: Namespace) -> Path:
        return ns.path / "in.jsonl"

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        self.path(ns).write_text("".join(encode_line(r) + "\n" for r in rows), encoding="utf-8")

    def build(self, ns: Namespace) -> Any:
        return self.target(self.path(ns))

    def canonical_row(self, row: Any) -> Hashable:
        return json_row(row)


class DeepCopyMemorySink(BaseSink):
    """Rows-only in-memory reference sink: ``write()`` only (the base ``write_batch``
    calls it per record), each record stored as a deep copy, exactly as given — no
    encoding, no validation, so it accepts records a file sink would refuse (even the
    suite's own exploding probe). Its ``records`` list is the medium."""

    __conformance_harness__ = "conformance.mutants.reference:DeepCopyMemorySinkHarness"
    sink_name = "deepcopy_memory"

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def open(self) -> None:
        await super().open()

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self.records.append(copy.deepcopy(record))


class DeepCopyMemorySinkHarness(SinkHarness):
    """Reads back the ``records`` of every sink built for the namespace, in order."""

    features = ALL_FEATURES
    accepts_any_record = True

    def build(self, ns: Namespace) -> Any:
        return self.target()

    def build_append(self, ns: Namespace) -> Any:
        return self.target()

    def read_back(self, ns: Namespace) -> list[Any]:
        return [r for sink in ns.components if isinstance(sink, self.target) for r in sink.records]
