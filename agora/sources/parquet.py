"""``ParquetSource``: Arrow batches streamed from a Parquet file, resumed by row offset."""

from __future__ import annotations

from contextlib import aclosing
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from agora.errors import CheckpointError, SourceRecordError
from agora.planes import DataPlane
from agora.sources._builtin import (
    BuiltinSource,
    checkpoint_fields,
    compact_slice,
    file_source_name,
    missing_file_error,
    positive_int_or_none,
)
from agora.sources.identity import parquet_identity, split_identity, verify_parquet

__all__ = ["ParquetSource"]

#: Rows per batch. Big enough to amortise per-batch overhead in the runtime, small enough
#: that a batch of a wide table stays a few tens of MB.
DEFAULT_PARQUET_BATCH_SIZE = 65536


class ParquetSource(BuiltinSource):
    """Arrow record batches from a Parquet file via ``ParquetFile.iter_batches``.

    Streams at most about one row group plus one batch in memory; a batch never spans two
    row groups. ``columns`` selects
    top-level columns (unknown names are rejected at ``open()`` — pyarrow would silently
    return none). Checkpoint: ``{"row": n}``, rows emitted; resume skips whole row groups
    using the file metadata and slices the first batch, so it reads nothing before the
    row group holding row ``n``.

    The checkpoint also carries the file's identity, ``"input": {"size": …,
    "footer_sha256": …}`` (its size and a hash of its footer: schema, row-group offsets,
    sizes and statistics). A resume over a file whose size or footer differ — rewritten,
    replaced, appended to — is a ``CheckpointError``; so is a checkpoint past the end. An
    empty, truncated or non-Parquet file is a ``SourceRecordError`` naming the path.

    Rows mode (0.3.0's): given a ``row_mapper`` (or ``use_arrow_batches=False``), the
    source emits rows (``python_rows``) through ``stream()``: ``row_mapper(row)`` for each
    row dict, None skipping the row (without one, the dicts themselves). The checkpoint
    counts rows read the same way. ``use_arrow_batches=True`` emits Arrow batches and
    ignores the mapper, as 0.3.0 did; ``batch_size`` is then the rows per batch.
    """

    plane = DataPlane.ARROW_BATCHES

    def __init__(
        self,
        path: str | os.PathLike[str],
        row_mapper: Callable[[dict[str, Any]], Any] | None = None,
        batch_size: int = DEFAULT_PARQUET_BATCH_SIZE,
        *,
        columns: Sequence[str] | None = None,
        name: str | None = None,
        use_arrow_batches: bool | None = None,
    ) -> None:
        super().__init__(file_source_name("parquet", path, name))
        self.path = os.fspath(path)
        if row_mapper is not None and not callable(row_mapper):
            raise TypeError(
                f"source {self.source_name!r}: row_mapper must be a callable taking a row "
                f"dict; got {type(row_mapper).__name__} — pass a function, or leave it out "
                f"to read Arrow batches"
            )
        if use_arrow_batches is None:
            use_arrow_batches = row_mapper is None
        elif not isinstance(use_arrow_batches, bool):
            raise TypeError(
                f"source {self.source_name!r}: use_arrow_batches must be True, False or "
                f"None; got {use_arrow_batches!r}"
            )
        # As in 0.3.0, Arrow batches bypass the mapper.
        self.row_mapper = None if use_arrow_batches else row_mapper
        self.plane = DataPlane.ARROW_BATCHES if use_arrow_batches else DataPlane.PYTHON_ROWS
        self.batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        if isinstance(columns, str):
            raise TypeError(
                f"source {self.source_name!r}: columns must be a list of names; got the "
                f"string {columns!r} — did you mean [{columns!r}]?"
            )
        self.columns = list(columns) if columns is not None else None
        self._reset()

    def _reset(self) -> None:
        self._fh: IO[bytes] | None = None
        self._file: pq.ParquetFile | None = None
        self._row = 0
        self._last_start: int | None = None
        self._input: dict[str, Any] | None = None  # identity of the open file
        self._recorded: Any = None  # identity the resumed checkpoint recorded
        self._value: Any = None

    def current_checkpoint(self) -> dict[str, Any] | None:
        if self._input is None:
            return None  # not opened yet: the file's identity is not known
        return {"row": self._row, "input": self._input}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, Any]:
        assert self._last_start is not None, "no batch emitted yet"
        return {"row": self._last_start + rows, "input": self._input}

    def _apply_checkpoint(self, value: Any) -> None:
        fields, self._recorded = split_identity(
            self.source_name, self.path, value, '{"row": <int >= 0>, "input": {...}}'
        )
        self._row = checkpoint_fields(self.source_name, fields, ("row",))["row"]
        self._value = value

    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 — closed in _close()
        except FileNotFoundError:
            raise missing_file_error(self.source_name, self.path) from None
        try:
            # Identity and data come from the same open file, so a file swapped in
            # between cannot pass the check and then be read.
            self._input = parquet_identity(self.source_name, self.path, self._fh)
            if self._value is not None:
                verify_parquet(self.source_name, self.path, self._value, self._recorded,
                               self._input)
            self._fh.seek(0)
            try:
                self._file = pq.ParquetFile(self._fh)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceRecordError(
                    self.source_name,
                    self.path,
                    f"not a readable Parquet file ({self._input['size']} bytes): {exc} — "
                    f"check the path, or re-create the file (an empty or truncated file is "
                    f"often a writer that did not finish)",
                    hint=False,
                ) from exc
            self._check()
        except BaseException:
            self._close()
            raise

    def _check(self) -> None:
        assert self._file is not None
        if self.columns is not None:
            names = self._file.schema_arrow.names
            unknown = [c for c in self.columns if c.split(".", 1)[0] not in names]
            if unknown:
                raise ValueError(
                    f"source {self.source_name!r}: {self.path!r} has no column(s) {unknown}; "
                    f"its columns are {names}"
                )
        total = self._file.metadata.num_rows
        if self._row > total:
            raise CheckpointError(
                f"source {self.source_name!r}: the checkpoint is after row {self._row} but "
                f"{self.path!r} has {total} rows; the file changed since the checkpoint was "
                f"taken — reset the checkpoint or restore the file"
            )

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    async def stream_batches(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream_batches")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        self._require_plane(DataPlane.ARROW_BATCHES, "stream_batches")
        for batch in self._unread_batches():
            self._last_start = self._row
            self._row += batch.num_rows
            yield batch

    async def stream(self) -> AsyncIterator[Any]:
        """Rows mode (a ``row_mapper``): ``row_mapper(row)`` for each row, as a dict; a
        None result skips the row. A mapper that raises stops the read with a
        ``SourceRecordError`` carrying the row (dead-lettered when a DLQ is set; the run
        then stops with the mapper's exception)."""
        if (alone := self._read_unopened("stream")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        self._require_plane(DataPlane.PYTHON_ROWS, "stream")
        mapper = self.row_mapper
        for batch in self._unread_batches():
            for row in batch.to_pylist():
                self._row += 1  # the position after this row, whatever becomes of it
                if mapper is None:
                    yield row
                    continue
                try:
                    record = mapper(row)
                except Exception as exc:
                    raise SourceRecordError(exc, record=row, checkpoint=self.current_checkpoint(),
                                            source=self.source_name) from exc
                if record is not None:
                    yield record

    def _require_plane(self, plane: DataPlane, method: str) -> None:
        if self.plane is not plane:
            other = "stream()" if method == "stream_batches" else "stream_batches()"
            raise NotImplementedError(
                f"source {self.source_name!r} emits {self.plane.value}; it has no "
                f"{method}() — use {other}"
            )

    def _unread_batches(self) -> Iterator[pa.RecordBatch]:
        """The file's batches from row ``self._row`` on (read when the first is asked for)."""
        pf = self._file
        assert pf is not None
        meta = pf.metadata
        start = self._row
        group_start = 0
        for group in range(meta.num_row_groups):
            group_rows = meta.row_group(group).num_rows
            group_end = group_start + group_rows
            if group_end <= start:
                group_start = group_end  # wholly before the checkpoint: not even read
                continue
            skip = max(0, start - group_start)  # only the first group read may start inside
            # One row group at a time, so batch boundaries depend only on the group, and a
            # resumed run cuts the same batches as the first run did.
            for batch in self._group_batches(pf, group):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch, skip = compact_slice(batch, skip), 0
                if batch.num_rows > 0:
                    yield batch
            group_start = group_end

    def _group_batches(self, pf: pq.ParquetFile, group: int) -> Iterator[pa.RecordBatch]:
        """Batches of one row group; a corrupt group is an error naming the file and group."""
        batches = pf.iter_batches(
            batch_size=self.batch_size, row_groups=[group], columns=self.columns
        )
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceRecordError(
                    self.source_name,
                    f"{self.path} (row group {group})",
                    f"cannot decode the row group: {exc} — the file is corrupt; re-create it",
                    hint=False,
                ) from exc
            yield batch
