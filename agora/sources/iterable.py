"""In-memory sources: rows, Python batches and Arrow batches from iterables."""

from __future__ import annotations

from contextlib import aclosing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic

import pyarrow as pa

from agora.errors import CheckpointError, LifecycleError
from agora.planes import DataPlane
from agora.sources.base import RecordT
from agora.sources._builtin import (
    BuiltinSource,
    OnMalformed,
    bad_checkpoint,
    checkpoint_fields,
    compact_slice,
    count_field,
    positive_int_or_none,
)

__all__ = ["ArrowBatchSource", "IterableBatchSource", "IterableSource", "OnMalformed"]


# -- IterableSource -----------------------------------------------------------------------


#: What a re-readable input may be: the data itself, or a callable returning fresh data.
Input = Iterable[Any] | Callable[[], Iterable[Any]]


class _IteratingSource(BuiltinSource):
    """A source that pulls from a user iterable while it is open.

    The input is either an iterable or a zero-argument callable returning one (called at
    every ``open()``, so each read gets fresh data). A one-shot iterator (a generator, or
    any iterator) can be read by one run only: opening it again — a second run of a bound
    pipeline, or a resume on the same instance — is a ``LifecycleError`` rather than a
    silent read of whatever is left of it.
    """

    _iterator: Iterator[Any] | None = None

    def _init_input(self, data: Any, what: str) -> None:
        if not isinstance(data, Iterable) and not callable(data):
            raise TypeError(
                f"source {self.source_name!r} needs {what} (or a callable returning one); "
                f"got {type(data).__name__}"
            )
        self._input: Input = data
        self._one_shot_read = False  # a one-shot iterator input was opened by a read

    def _fresh_input(self) -> Iterable[Any]:
        data = self._input
        if not isinstance(data, Iterable):
            produced = data()
            if not self._is_data(produced):
                raise TypeError(
                    f"source {self.source_name!r}: the input factory returned a "
                    f"{type(produced).__name__}; it must return an iterable"
                )
            fresh: Iterable[Any] = produced  # _is_data checked it is an iterable
            return fresh
        if isinstance(data, Iterator):
            if self._one_shot_read:
                raise LifecycleError(
                    f"source {self.source_name!r} reads a one-shot iterator "
                    f"({type(data).__name__}) that an earlier read already consumed; pass a "
                    f"list (or other re-iterable), or a callable returning a fresh iterator, "
                    f"to read it again"
                )
            self._one_shot_read = True
        return data

    def _is_data(self, value: Any) -> bool:
        return isinstance(value, Iterable)

    def _open(self) -> None:
        self._iterator = iter(self._fresh_input())

    def _close(self) -> None:
        # A generator the source pulled from is closed with it (its finally blocks run now,
        # not at garbage collection).
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        self._iterator = None


class IterableSource(_IteratingSource, Generic[RecordT]):
    """Rows from an iterable of records, or a callable returning one (``python_rows``).

    Checkpoint: the number of records emitted (an int). A resume skips that many items of
    the iterable it is given, so resuming needs a *re-iterable* input (a list, a factory,
    or a fresh iterator over the same data passed to the new instance); an input shorter than the
    checkpoint raises ``CheckpointError``. Items are opaque records — dicts, dataclasses,
    ints, anything; a sink that needs mappings says so and fails other records one by one
    (a ``MalformedRecord`` passes through and counts as a unit). Items are pulled one at a time, so the runtime's
    ``max_records`` never pulls one too many.
    """

    plane = DataPlane.PYTHON_ROWS

    def __init__(
        self,
        iterable: Iterable[Any] | Callable[[], Iterable[Any]],
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name if name is not None else "iterable")
        self._init_input(iterable, "an iterable of dicts")
        self._reset()

    def _reset(self) -> None:
        self._iterator = None
        self._skip = 0
        self._emitted = 0

    @property
    def _records(self) -> Input:
        """The input exactly as given: 0.3.0 subclasses iterate it in their own
        ``stream()``. Such a ``stream()`` does not count what it emits, so its checkpoint
        stays at the start and a resume re-reads from there (nothing is skipped)."""
        return self._input

    def current_checkpoint(self) -> int:
        return self._emitted

    def _apply_checkpoint(self, value: Any) -> None:
        self._skip = count_field(self.source_name, value, "an int >= 0 (records emitted)", value)
        self._emitted = self._skip

    async def stream(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        it = self._iterator
        assert it is not None
        skip, self._skip = self._skip, 0
        for done in range(skip):
            if next(it, _END) is _END:
                raise _input_too_short(self.source_name, skip, done)
        for item in it:
            # Records are opaque: whether a record must be a mapping is the sink's
            # business (it declares ``requires_mappings`` and fails such records itself).
            self._emitted += 1
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

    def __init__(
        self,
        batches: Iterable[list[dict[str, Any]]] | Callable[[], Iterable[list[dict[str, Any]]]],
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name if name is not None else "iterable_batches")
        self._init_input(batches, "an iterable of lists of dicts")
        self._reset()

    def _reset(self) -> None:
        self._iterator = None
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

    async def stream_batches(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream_batches")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
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


class ArrowBatchSource(_IteratingSource):
    """Arrow record batches from a ``pyarrow.Table``, a ``RecordBatch``, an iterable of
    ``RecordBatch`` or a callable returning one of these (``arrow_batches``).

    A table is split with ``to_batches(max_chunksize=batch_size)`` (zero-copy). Checkpoint:
    ``{"row": n}``, the number of rows emitted; resume skips ``n`` rows (whole batches, then
    a compacted slice of the batch holding row ``n``). Empty batches are not emitted.
    """

    plane = DataPlane.ARROW_BATCHES

    def __init__(
        self,
        data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch] | Callable[[], Any],
        *,
        name: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(name if name is not None else "arrow_batches")
        self._batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        if isinstance(data, pa.RecordBatch):
            data = [data]
        if isinstance(data, pa.Table):
            self._init_input([], "")
            self._table: pa.Table | None = data
        else:
            self._init_input(data, "a pyarrow.Table or an iterable of pyarrow.RecordBatch")
            self._table = None
        self._reset()

    def _reset(self) -> None:
        self._iterator = None
        self._row = 0
        self._last_start: int | None = None

    def _is_data(self, value: Any) -> bool:
        return isinstance(value, (pa.Table, pa.RecordBatch, Iterable))

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
        if self._table is not None:
            self._iterator = iter(self._table.to_batches(max_chunksize=self._batch_size))
            return
        data = self._fresh_input()
        if isinstance(data, pa.Table):  # a factory may return a table
            data = data.to_batches(max_chunksize=self._batch_size)
        elif isinstance(data, pa.RecordBatch):
            data = [data]
        self._iterator = iter(data)

    async def stream_batches(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream_batches")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
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
