"""CSV sources: stdlib ``csv`` rows/batches (``CsvSource``) and ``pyarrow.csv`` batches."""

from __future__ import annotations

import codecs
import copy
import csv
import os
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from agora.errors import CheckpointError, SourceRecordError
from agora.planes import DataPlane
from agora.records import MalformedRecord
from agora.sources.iterable import (
    BuiltinSource,
    OnMalformed,
    checkpoint_fields,
    compact_slice,
    file_source_name,
    missing_file_error,
    parse_on_malformed,
    positive_int_or_none,
)

__all__ = ["ArrowCsvSource", "CsvSource"]

_Pos = tuple[int, int]  # (lines consumed, byte offset)


class CsvSource(BuiltinSource):
    """Rows from a CSV file with a header row, read with the stdlib ``csv`` module.

    Each record is ``dict(zip(header, values))`` with string values (``csv.DictReader``
    semantics); blank lines are skipped. With ``batch_size`` the source emits Python
    batches (``list[dict]`` of up to ``batch_size`` rows) instead of rows; a batch ends early
    at a malformed record so units stay in file order.

    Malformed records — a field count different from the header's, a ``csv.Error``, or a
    line the ``encoding`` cannot decode — raise ``SourceRecordError`` (``"fail"``) or are
    emitted as ``MalformedRecord(raw=<record text>, location="path:LINE")`` (``"dlq"``).

    Checkpoint: ``{"line": n, "byte": offset}`` just after the last emitted unit; resume
    re-reads the header and seeks, so it costs nothing however far in the file it is. A
    checkpoint past the end of the file (a replaced or truncated file) is a
    ``CheckpointError``. ``encoding`` must be ASCII-compatible (the file is split into
    lines on ``b"\\n"``); ``fmtparams`` go to ``csv.reader`` (e.g. ``delimiter=";"``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int | None = None,
        on_malformed: OnMalformed | str = "fail",
        encoding: str = "utf-8",
        name: str | None = None,
        **fmtparams: Any,
    ) -> None:
        super().__init__(file_source_name("csv", path, name))
        self.path = os.fspath(path)
        self.batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        self.plane = DataPlane.PYTHON_ROWS if batch_size is None else DataPlane.PYTHON_BATCHES
        self.on_malformed = parse_on_malformed(self.source_name, on_malformed)
        codecs.lookup(encoding)  # LookupError for an unknown encoding, at construction
        one, two = "\n".encode(encoding), "\n\n".encode(encoding)
        if not one.endswith(b"\n") or two != one + b"\n":  # BOM-prefixed utf-8-sig is fine
            raise ValueError(
                f"source {self.source_name!r}: encoding {encoding!r} is not ASCII-compatible; "
                f"CsvSource splits lines on b'\\n' — re-encode the file as UTF-8"
            )
        self.encoding = encoding
        csv.reader([], **fmtparams)  # reject bad formatting parameters now, not mid-run
        self._fmtparams = fmtparams
        self._fh: IO[bytes] | None = None
        self._pos: _Pos = (0, 0)  # checkpoint: after the last emitted unit
        self._read: _Pos = (0, 0)  # where the reader stands
        self._header: list[str] | None = None
        self._batch_ends: list[_Pos] = []  # end of each row of the last batch
        self._batch_start: _Pos = (0, 0)
        self._parts: list[bytes] = []  # physical lines of the record being read
        self._decode_error: str | None = None

    # -- checkpointing ----------------------------------------------------------------
    def current_checkpoint(self) -> dict[str, int]:
        return {"line": self._pos[0], "byte": self._pos[1]}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, int]:
        line, byte = self._batch_ends[rows - 1] if rows > 0 else self._batch_start
        return {"line": line, "byte": byte}

    def _apply_checkpoint(self, value: Any) -> None:
        fields = checkpoint_fields(self.source_name, value, ("line", "byte"))
        self._pos = (fields["line"], fields["byte"])

    # -- lifecycle --------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 — closed in _close()
        except FileNotFoundError:
            raise missing_file_error(self.source_name, self.path) from None
        try:
            self._position_reader()
        except BaseException:
            self._fh.close()
            self._fh = None
            raise

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _position_reader(self) -> None:
        assert self._fh is not None
        size = os.fstat(self._fh.fileno()).st_size
        self._reader = csv.reader(self._lines(), **self._fmtparams)
        header = self._next_record()
        if header is not None:
            if self._decode_error is not None:
                raise SourceRecordError(self.source_name, f"{self.path}:1", self._decode_error)
            self._header = header
        header_end = self._read
        resumed = self._pos
        if resumed == (0, 0):
            self._pos = header_end
        elif not self._fits(resumed, header_end, size):
            raise CheckpointError(
                f"source {self.source_name!r}: checkpoint {self.current_checkpoint()} does not "
                f"fit {self.path!r} (header ends at byte {header_end[1]}, file is {size} bytes); "
                f"the file changed since the checkpoint was taken — reset the checkpoint or "
                f"restore the original file"
            )
        else:
            self._fh.seek(resumed[1])
            self._read = resumed
        self._batch_start = self._pos

    def _fits(self, resumed: _Pos, header_end: _Pos, size: int) -> bool:
        """Could ``resumed`` be a record end in this file? (Cheap tamper check.)"""
        assert self._fh is not None
        line, byte = resumed
        if byte == 0 or byte < header_end[1] or byte > size or line < header_end[0]:
            return False
        if byte == size:
            return True  # the end of a last record that has no final newline
        self._fh.seek(byte - 1)
        return self._fh.read(1) == b"\n"

    # -- reading ----------------------------------------------------------------------
    def _lines(self) -> Iterator[str]:
        """Physical lines for ``csv.reader``, tracking byte and line position.

        ``csv.reader`` pulls exactly the lines of one record per ``next()``, so after each
        record ``self._read`` is the exact position after it.
        """
        fh = self._fh
        assert fh is not None
        while raw := fh.readline():
            self._parts.append(raw)
            self._read = (self._read[0] + 1, self._read[1] + len(raw))
            try:
                yield raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                self._decode_error = f"cannot decode line as {self.encoding}: {exc.reason}"
                yield raw.decode(self.encoding, errors="replace")

    def _next_record(self) -> list[str] | None:
        """Next non-blank record, or None at end of file. Raises ``csv.Error``."""
        while True:
            self._parts.clear()
            self._decode_error = None
            row = next(self._reader, None)
            if row is None or row:
                return row

    def _records(self) -> Iterator[tuple[Any, _Pos]]:
        """(record or MalformedRecord, position after it) for each data record."""
        header = self._header
        if header is None:
            return
        while True:
            first_line = self._read[0] + 1
            try:
                row = self._next_record()
                reason = self._decode_error
            except csv.Error as exc:
                row, reason = [], f"CSV syntax error: {exc}"
            if row is None:
                return
            if reason is None and len(row) != len(header):
                reason = f"expected {len(header)} fields (the header's), got {len(row)}"
            if reason is None:
                yield dict(zip(header, row, strict=True)), self._read
                continue
            location = f"{self.path}:{first_line}"
            if self.on_malformed is OnMalformed.FAIL:
                raise SourceRecordError(self.source_name, location, reason)
            raw = b"".join(self._parts).decode(self.encoding, errors="replace")
            yield MalformedRecord(raw=raw.rstrip("\r\n"), reason=reason, location=location), (
                self._read
            )

    async def stream(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream")
        if self.batch_size is not None:
            raise NotImplementedError(
                f"source {self.source_name!r} has batch_size={self.batch_size} and emits "
                f"python_batches; it has no stream() — use stream_batches()"
            )
        for item, end in self._records():
            self._pos = end
            yield item

    async def stream_batches(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream_batches")
        if self.batch_size is None:
            raise NotImplementedError(
                f"source {self.source_name!r} emits rows (no batch_size); it has no "
                f"stream_batches() — use stream()"
            )
        batch: list[dict[str, str]] = []
        ends: list[_Pos] = []
        for item, end in self._records():
            if isinstance(item, MalformedRecord):
                if batch:
                    # Emit the rows before the bad record first: units stay in file order,
                    # so every checkpoint is a plain file position.
                    self._emit_batch(ends)
                    yield batch
                    batch, ends = [], []
                self._pos = end
                self._batch_ends = []
                yield item
                continue
            batch.append(item)
            ends.append(end)
            if len(batch) >= self.batch_size:
                self._emit_batch(ends)
                yield batch
                batch, ends = [], []
        if batch:
            self._emit_batch(ends)
            yield batch

    def _emit_batch(self, ends: list[_Pos]) -> None:
        self._batch_start = self._pos
        self._batch_ends = ends
        self._pos = ends[-1]


#: pyarrow's own default block size. A block is parsed and converted at once, so it bounds
#: the reader's memory (a few times the block) and sets the rows per batch (block / row size).
DEFAULT_BLOCK_SIZE = 1 << 20


class ArrowCsvSource(BuiltinSource):
    """Arrow record batches from a CSV file, streamed with ``pyarrow.csv.open_csv``.

    Memory is bounded by the block size, not the file size. ``block_size`` (bytes) sets the
    parse unit; ``batch_size`` (rows, optional) caps the rows per emitted batch by slicing
    bigger blocks. ``read_options`` / ``parse_options`` / ``convert_options`` /
    ``memory_pool`` pass through to pyarrow, except that reading is forced single-threaded:
    that keeps malformed rows reported in file order with their line number, which exact
    resume and the DLQ location need.

    Malformed rows (a wrong column count): ``"fail"`` raises ``SourceRecordError`` naming
    the file, line and reason; ``"dlq"`` drops the row from its batch and emits a
    ``MalformedRecord`` for it no later than just before that batch. (pyarrow parses a
    block ahead, so a marker may also come a batch earlier; which one can vary between
    runs, and the checkpoint does not depend on it.) A value that does not
    convert to its column's type (inferred from the first block) is always fatal — pass
    ``convert_options=ConvertOptions(column_types=...)`` to read such columns as strings.

    Checkpoint: ``{"row": good rows emitted, "malformed": malformed rows emitted}``. Both
    kinds are emitted in file order, so a resume that re-scans the file from the top and
    skips that many of each repeats and loses nothing; its cost is a re-parse of the part
    already read.
    """

    plane = DataPlane.ARROW_BATCHES

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int | None = None,
        batch_size: int | None = None,
        on_malformed: OnMalformed | str = "fail",
        read_options: pa_csv.ReadOptions | None = None,
        parse_options: pa_csv.ParseOptions | None = None,
        convert_options: pa_csv.ConvertOptions | None = None,
        memory_pool: pa.MemoryPool | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(file_source_name("arrow_csv", path, name))
        self.path = os.fspath(path)
        self.on_malformed = parse_on_malformed(self.source_name, on_malformed)
        self.batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        block_size = positive_int_or_none(self.source_name, "block_size", block_size)
        self._read_options = copy.copy(read_options) if read_options else pa_csv.ReadOptions()
        self._read_options.use_threads = False
        if block_size is not None or read_options is None:
            self._read_options.block_size = block_size or DEFAULT_BLOCK_SIZE
        self.block_size = self._read_options.block_size
        self._parse_options = copy.copy(parse_options) if parse_options else pa_csv.ParseOptions()
        if self._parse_options.invalid_row_handler is not None:
            raise ValueError(
                f"source {self.source_name!r}: parse_options.invalid_row_handler is managed "
                f"by the source; use on_malformed='fail' or 'dlq' instead"
            )
        self._parse_options.invalid_row_handler = self._on_invalid_row
        self._convert_options = convert_options
        self._memory_pool = memory_pool
        self._reader: Any = None
        self._rows = 0  # good rows emitted (or skipped on resume)
        self._malformed = 0  # malformed rows emitted (or skipped on resume)
        self._skip_rows = 0
        self._skip_malformed = 0
        self._scanned = 0  # data rows parsed so far, good or bad (for error locations)
        self._pending: list[MalformedRecord] = []
        self._invalid: Any = None  # first invalid row under "fail"
        self._last_start = 0
        self._stats = {"blocks": 0, "rows": 0, "malformed": 0, "rescanned_rows": 0}

    # -- checkpointing ----------------------------------------------------------------
    def current_checkpoint(self) -> dict[str, int]:
        return {"row": self._rows, "malformed": self._malformed}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, int]:
        return {"row": self._last_start + rows, "malformed": self._malformed}

    def _apply_checkpoint(self, value: Any) -> None:
        fields = checkpoint_fields(self.source_name, value, ("row", "malformed"))
        self._rows = self._skip_rows = fields["row"]
        self._malformed = self._skip_malformed = fields["malformed"]

    @property
    def stats(self) -> dict[str, int]:
        """Counters for the run summary: blocks parsed, rows and malformed rows emitted,
        rows re-parsed to reach the resume point."""
        return dict(self._stats)

    @property
    def runtime_metrics(self) -> dict[str, int | float]:
        return {f"arrow_csv_{key}": value for key, value in self._stats.items()}

    # -- lifecycle --------------------------------------------------------------------
    def _open(self) -> None:
        if not os.path.exists(self.path):
            raise missing_file_error(self.source_name, self.path)
        if os.path.getsize(self.path) == 0:
            self._reader = None  # pyarrow rejects an empty file; we read it as no rows
        else:
            self._reader = self._call(
                lambda: pa_csv.open_csv(
                    self.path,
                    read_options=self._read_options,
                    parse_options=self._parse_options,
                    convert_options=self._convert_options,
                    memory_pool=self._memory_pool,
                ),
                opening=True,
            )
        if self._reader is None and (self._skip_rows or self._skip_malformed):
            raise self._past_end()

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- reading ----------------------------------------------------------------------
    def _on_invalid_row(self, row: Any) -> str:
        # Called by pyarrow, in file order (single-threaded reading). Must not raise:
        # pyarrow would only print the exception.
        self._scanned += 1
        if self.on_malformed is OnMalformed.FAIL:
            if self._invalid is None:
                self._invalid = row
            return "error"
        if self._skip_malformed:
            self._skip_malformed -= 1
            return "skip"
        line = row.number if row.number is not None else f"data row {self._scanned}"
        self._pending.append(
            MalformedRecord(
                raw=row.text,
                reason=f"expected {row.expected_columns} columns, got {row.actual_columns}",
                location=f"{self.path}:{line}",
            )
        )
        return "skip"

    def _call(self, fn: Any, *, opening: bool = False) -> Any:
        """Run a pyarrow read, turning its parse errors into ``SourceRecordError``."""
        try:
            return fn()
        except pa.ArrowInvalid as exc:
            if opening and "Empty CSV file" in str(exc):
                return None  # blank lines only: no header, no rows
            if self._invalid is not None:
                row = self._invalid
                where = row.number if row.number is not None else "?"
                raise SourceRecordError(
                    self.source_name,
                    f"{self.path}:{where}",
                    f"expected {row.expected_columns} columns, got {row.actual_columns}: "
                    f"{row.text!r}",
                ) from exc
            raise SourceRecordError(
                self.source_name,
                f"{self.path} (in the block after data row {self._scanned})",
                f"{exc} — values that do not fit the column type inferred from the first "
                f"block cannot be dead-lettered; set convert_options column_types",
                hint=False,
            ) from exc

    async def stream_batches(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream_batches")
        while self._reader is not None:
            batch = self._call(self._next_batch)
            if batch is _EOF:
                break
            for record in self._drain():
                yield record
            for piece in self._pieces(batch):
                self._last_start = self._rows
                self._rows += piece.num_rows
                self._stats["rows"] += piece.num_rows
                yield piece
        for record in self._drain():
            yield record
        if self._skip_rows or self._skip_malformed:
            raise self._past_end()

    def _next_batch(self) -> Any:
        try:
            return self._reader.read_next_batch()
        except StopIteration:
            return _EOF

    def _drain(self) -> Iterator[MalformedRecord]:
        while self._pending:
            record = self._pending.pop(0)
            self._malformed += 1
            self._stats["malformed"] += 1
            yield record

    def _pieces(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        self._stats["blocks"] += 1
        self._scanned += batch.num_rows
        start = 0
        if self._skip_rows:
            start = min(self._skip_rows, batch.num_rows)
            self._skip_rows -= start
            self._stats["rescanned_rows"] += start
        if self.batch_size is None:
            if start < batch.num_rows:
                yield compact_slice(batch, start)
            return
        # Capped batches are zero-copy views of the block's batch.
        for offset in range(start, batch.num_rows, self.batch_size):
            yield batch.slice(offset, self.batch_size)

    def _past_end(self) -> CheckpointError:
        return CheckpointError(
            f"source {self.source_name!r}: the checkpoint is after {self._rows} rows and "
            f"{self._malformed} malformed rows, but {self.path!r} has fewer; the file changed "
            f"since the checkpoint was taken — reset the checkpoint or restore the file"
        )


_EOF = object()
