"""In-memory sources, plus the lifecycle/checkpoint/naming plumbing all built-ins share."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any

import pyarrow as pa

from agora.errors import CheckpointError, LifecycleError
from agora.planes import DataPlane, SourceDataPlaneSpec
from agora.records import Checkpoint, MalformedRecord
from agora.sources.base import BaseSource

__all__ = ["ArrowBatchSource", "IterableBatchSource", "IterableSource", "OnMalformed"]


# -- shared plumbing ----------------------------------------------------------------------


class OnMalformed(StrEnum):
    """What a file source does with a malformed input record."""

    FAIL = "fail"  # raise SourceRecordError naming file, line and reason
    DLQ = "dlq"  # emit a MalformedRecord in its place and continue


class SourceState(StrEnum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def parse_on_malformed(source_name: str, value: OnMalformed | str) -> OnMalformed:
    try:
        return OnMalformed(value)
    except ValueError:
        raise ValueError(
            f"source {source_name!r}: on_malformed must be 'fail' or 'dlq'; got {value!r}"
        ) from None


def file_source_name(kind: str, path: str | os.PathLike[str], name: str | None) -> str:
    """``name`` if given, else ``"<kind>:<basename>"``.

    The basename (not the absolute path) keeps the name stable when the same input is read
    from another directory or a fresh temp dir; the kind prefix keeps checkpoints of two
    different readers of one file (say CSV rows vs Arrow CSV) from being mixed up.
    """
    if name is not None:
        return name
    return f"{kind}:{os.path.basename(os.fspath(path))}"


def missing_file_error(source_name: str, path: str) -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENOENT,
        f"source {source_name!r}: input file does not exist (relative paths resolve against "
        f"{os.getcwd()!r}); check the path, or create the file before running the pipeline",
        path,
    )


def positive_int_or_none(source_name: str, field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"source {source_name!r}: {field} must be a positive int; got {value!r}")
    return value


def compact_slice(batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
    """``batch[offset:]`` with freshly packed buffers.

    A plain ``slice`` keeps the parent's buffers alive and carries an offset; a resumed run
    slices at most one batch, so copying it once is cheap and every emitted batch stays
    compact.
    """
    if offset == 0:
        return batch
    return pa.concat_batches([batch.slice(offset)])


def bad_checkpoint(source_name: str, value: Any, expected: str) -> CheckpointError:
    return CheckpointError(
        f"source {source_name!r}: checkpoint value {value!r} is not one this source wrote; "
        f"expected {expected}. Was it saved by a different source? Reset it "
        f"(agora checkpoint reset) or resume with the source that wrote it"
    )


def count_field(source_name: str, value: Any, expected: str, raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise bad_checkpoint(source_name, value, expected)
    return raw


def checkpoint_fields(source_name: str, value: Any, fields: tuple[str, ...]) -> dict[str, int]:
    """Validate a ``{field: non-negative int, ...}`` checkpoint value and return it."""
    expected = "{" + ", ".join(f'"{f}": <int >= 0>' for f in fields) + "}"
    if not isinstance(value, Mapping) or set(value) != set(fields):
        raise bad_checkpoint(source_name, value, expected)
    return {f: count_field(source_name, value, expected, value[f]) for f in fields}


class BuiltinSource(BaseSource):
    """Lifecycle and plane plumbing shared by the built-in sources.

    ``prepare_resume`` is only valid before ``open()``; ``open`` is valid once; ``close`` is
    idempotent and valid in any state. Subclasses implement ``_apply_checkpoint`` (validate
    and remember a position), ``_open`` and ``_close``.
    """

    supports_checkpoint = True
    plane: DataPlane = DataPlane.PYTHON_ROWS  # what data_plane_spec() declares

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"source name must be a non-empty str; got {name!r}")
        self.source_name = name
        self._state = SourceState.NEW

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, self.plane)

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        if self._state is not SourceState.NEW:
            raise LifecycleError(
                f"source {self.source_name!r}: prepare_resume() must be called before open(); "
                f"the source is {self._state.value}"
            )
        if checkpoint is None:
            return
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"source {self.source_name!r}: prepare_resume() takes an agora Checkpoint or "
                f"None; got {type(checkpoint).__name__}"
            )
        if checkpoint.source != self.source_name:
            raise CheckpointError(
                f"source {self.source_name!r}: the checkpoint belongs to source "
                f"{checkpoint.source!r}; reset it (agora checkpoint reset) or use that source"
            )
        self._apply_checkpoint(checkpoint.value)

    async def open(self) -> None:
        if self._state is not SourceState.NEW:
            raise LifecycleError(
                f"source {self.source_name!r} is already {self._state.value}; a source is opened "
                f"once — create a new instance to read again"
            )
        self._open()
        self._state = SourceState.OPEN

    async def close(self) -> None:
        if self._state is SourceState.OPEN:
            self._state = SourceState.CLOSED
            self._close()
        else:
            self._state = SourceState.CLOSED

    def _require_open(self, method: str) -> None:
        if self._state is not SourceState.OPEN:
            raise LifecycleError(
                f"source {self.source_name!r}: {method}() needs an open source; it is "
                f"{self._state.value} — call open() first (the runtime does this for you)"
            )

    # -- subclass hooks ---------------------------------------------------------------
    def _apply_checkpoint(self, value: Any) -> None:
        raise NotImplementedError

    def _open(self) -> None:
        """Acquire resources; raise a clear error if the input is missing."""

    def _close(self) -> None:
        """Release resources (called at most once, only after a successful ``_open``)."""


# -- IterableSource -----------------------------------------------------------------------


class _IteratingSource(BuiltinSource):
    """A source that pulls from a user iterable (``self._iterable``) while it is open."""

    _iterable: Iterable[Any]
    _iterator: Iterator[Any] | None = None

    def _open(self) -> None:
        self._iterator = iter(self._iterable)

    def _close(self) -> None:
        # A generator the source pulled from is closed with it (its finally blocks run now,
        # not at garbage collection).
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        self._iterator = None


class IterableSource(_IteratingSource):
    """Rows from an iterable of dicts (``python_rows``).

    Checkpoint: the number of records emitted (an int). A resume skips that many items of
    the iterable it is given, so resuming needs a *re-iterable* input (a list, or a fresh
    iterator over the same data passed to the new instance); an input shorter than the
    checkpoint raises ``CheckpointError``. Items must be mappings (a ``MalformedRecord``
    passes through and counts as a unit). Items are pulled one at a time, so the runtime's
    ``max_records`` never pulls one too many.
    """

    plane = DataPlane.PYTHON_ROWS

    def __init__(self, iterable: Iterable[Mapping[str, Any]], *, name: str | None = None) -> None:
        super().__init__(name if name is not None else "iterable")
        if not isinstance(iterable, Iterable):
            raise TypeError(
                f"source {self.source_name!r} needs an iterable of dicts; "
                f"got {type(iterable).__name__}"
            )
        self._iterable: Iterable[Any] = iterable
        self._iterator: Iterator[Any] | None = None
        self._skip = 0
        self._emitted = 0

    def current_checkpoint(self) -> int:
        return self._emitted

    def _apply_checkpoint(self, value: Any) -> None:
        self._skip = count_field(self.source_name, value, "an int >= 0 (records emitted)", value)
        self._emitted = self._skip

    async def stream(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream")
        it = self._iterator
        assert it is not None
        skip, self._skip = self._skip, 0
        for done in range(skip):
            if next(it, _END) is _END:
                raise _input_too_short(self.source_name, skip, done)
        index = self._emitted
        for item in it:
            if not isinstance(item, (Mapping, MalformedRecord)):
                raise TypeError(
                    f"source {self.source_name!r}: item {index} is a {type(item).__name__}; "
                    f"rows must be dicts"
                )
            self._emitted += 1
            index += 1
            yield item


_END = object()


def _input_too_short(source_name: str, expected: int, got: int) -> CheckpointError:
    return CheckpointError(
        f"source {source_name!r}: the checkpoint is after item {expected}, but the input has "
        f"only {got}; resume with the same input the checkpoint was taken on, or reset it"
    )


# -- IterableBatchSource ------------------------------------------------------------------


class IterableBatchSource(_IteratingSource):
    """Python batches (``list[dict]``) from an iterable of lists (``python_batches``).

    Checkpoint: ``{"batch": b, "row": r}`` — resume skips ``b`` input batches, then the
    first ``r`` rows of batch ``b``. Empty input batches are consumed but not emitted.
    Like ``IterableSource``, resuming needs the same data again in a fresh iterable.
    """

    plane = DataPlane.PYTHON_BATCHES
    _SHAPE = ("batch", "row")

    def __init__(self, batches: Iterable[list[dict[str, Any]]], *, name: str | None = None) -> None:
        super().__init__(name if name is not None else "iterable_batches")
        if not isinstance(batches, Iterable):
            raise TypeError(
                f"source {self.source_name!r} needs an iterable of lists of dicts; "
                f"got {type(batches).__name__}"
            )
        self._iterable = batches
        self._iterator: Iterator[Any] | None = None
        self._batch = 0  # index of the next input batch
        self._row = 0  # rows of input batch ``_batch`` already emitted
        self._last_start: tuple[int, int] | None = None  # (batch, row) where the last unit began

    def current_checkpoint(self) -> dict[str, int]:
        return {"batch": self._batch, "row": self._row}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, int]:
        if self._last_start is None:
            raise LifecycleError(f"source {self.source_name!r}: no batch has been emitted yet")
        batch, start = self._last_start
        return {"batch": batch, "row": start + rows}

    def _apply_checkpoint(self, value: Any) -> None:
        fields = checkpoint_fields(self.source_name, value, self._SHAPE)
        self._batch, self._row = fields["batch"], fields["row"]

    async def stream_batches(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream_batches")
        it = self._iterator
        assert it is not None
        for done in range(self._batch):
            if next(it, _END) is _END:
                raise _input_too_short(self.source_name, self._batch, done)
        for batch in it:
            if isinstance(batch, tuple):
                batch = list(batch)
            if not isinstance(batch, list):
                raise TypeError(
                    f"source {self.source_name!r}: batch {self._batch} is a "
                    f"{type(batch).__name__}; batches must be lists of dicts"
                )
            start = self._row
            if start > len(batch):
                raise bad_checkpoint(
                    self.source_name,
                    {"batch": self._batch, "row": start},
                    f"a row offset <= {len(batch)} (the size of batch {self._batch})",
                )
            rows = batch[start:] if start else batch
            self._last_start = (self._batch, start)
            self._batch += 1
            self._row = 0
            if rows:
                yield rows


# -- ArrowBatchSource ---------------------------------------------------------------------


class ArrowBatchSource(BuiltinSource):
    """Arrow record batches from a ``pyarrow.Table`` or an iterable of ``RecordBatch``
    (``arrow_batches``).

    A table is split with ``to_batches(max_chunksize=batch_size)`` (zero-copy). Checkpoint:
    ``{"row": n}``, the number of rows emitted; resume skips ``n`` rows (whole batches, then
    a compacted slice of the batch holding row ``n``). Empty batches are not emitted.
    """

    plane = DataPlane.ARROW_BATCHES

    def __init__(
        self,
        data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch],
        *,
        name: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(name if name is not None else "arrow_batches")
        self._batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        if isinstance(data, pa.RecordBatch):
            data = [data]
        if not isinstance(data, (pa.Table, Iterable)):
            raise TypeError(
                f"source {self.source_name!r} needs a pyarrow.Table or an iterable of "
                f"pyarrow.RecordBatch; got {type(data).__name__}"
            )
        self._data = data
        self._iterator: Iterator[Any] | None = None
        self._row = 0
        self._last_start: int | None = None

    def current_checkpoint(self) -> dict[str, int]:
        return {"row": self._row}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, int]:
        if self._last_start is None:
            raise LifecycleError(f"source {self.source_name!r}: no batch has been emitted yet")
        return {"row": self._last_start + rows}

    def _apply_checkpoint(self, value: Any) -> None:
        self._row = checkpoint_fields(self.source_name, value, ("row",))["row"]

    def _open(self) -> None:
        # A table's batches are zero-copy views, so splitting it up front costs only
        # metadata; a resume then skips them exactly like an iterable's.
        data = self._data
        if isinstance(data, pa.Table):
            data = data.to_batches(max_chunksize=self._batch_size)
        self._iterator = iter(data)

    def _close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        self._iterator = None

    async def stream_batches(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream_batches")
        it = self._iterator
        assert it is not None
        skip, index = self._row, 0  # skip: rows still to pass over on resume
        for batch in it:
            if not isinstance(batch, pa.RecordBatch):
                raise TypeError(
                    f"source {self.source_name!r}: item {index} is a {type(batch).__name__}; "
                    f"expected pyarrow.RecordBatch"
                )
            index += 1
            if skip:
                if batch.num_rows <= skip:
                    skip -= batch.num_rows
                    continue
                batch = compact_slice(batch, skip)
                skip = 0
            if batch.num_rows == 0:
                continue
            self._last_start = self._row
            self._row += batch.num_rows
            yield batch
        if skip:
            raise _input_too_short(self.source_name, self._row, self._row - skip)
