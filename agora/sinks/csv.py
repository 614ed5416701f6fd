"""``CsvSink``: rows and batches through the csv module, Arrow batches through
``pyarrow.csv`` with a per-batch downgrade to the row path when pyarrow rejects a batch.
The dialect and cell formats are in :mod:`agora.sinks._csvformat`.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.csv as pa_csv

from agora.planes import DataPlane
from agora.records import WriteResult
from agora.sinks._files import (
    TextFileSink,
    check_complete_tail,
    check_file_mode,
    ensure_openable,
    mode_from,
    open_output_file,
)
from agora.sinks._csvformat import (
    ARROW_SAFE_DELIMITERS,
    RowFormatter,
    cell,
    check_delimiter,
    check_encoding,
    format_float,
)

__all__ = ["CsvSink", "format_float"]

# pyarrow refuses some batches (nested types, invalid UTF-8 in binary columns, types it
# has no CSV cast for); those and only those are downgraded to the row path.
# A non-UTF-8 encoding that cannot hold a value (UnicodeEncodeError) also sends the batch
# to the row path, where that row alone fails.
_ARROW_REJECTIONS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError,
                     UnicodeError)
class CsvSink(TextFileSink):
    """Writes records to a CSV file (dialect and formats: see the module docstring).

    ``CsvSink(path, row_mapper=None, fieldnames=None, append=None, flush_every=100,
    delimiter=",", encoding="utf-8", *, mode=None, name=None)`` — the positional order is
    upstream 0.3.0's, so its programs run unchanged.

    * ``row_mapper(record) -> mapping`` turns each record (any object) into the row that
      is written; without it records must be mappings. A mapper that raises, or returns
      something other than a mapping, fails that record alone. With a mapper, Arrow
      batches are written row by row through it (counted as downgraded batches).
    * ``mode="w"`` (truncate, the default) or ``"a"`` (append) is the preferred spelling;
      upstream's ``append=True`` / ``append=False`` means the same. Passing both with
      different meanings raises ``TypeError``.
    * ``flush_every``: once that many rows were written since the last hand-over, the
      sink hands its buffered output to the operating system (other readers then see it,
      and it survives a crash of this process). Durability against power loss comes from
      ``flush()`` (fsync), which the runtime calls before every checkpoint.
    * ``delimiter``: one ASCII character other than ``"``, CR or LF. With ``,`` ``;``
      ``|`` or tab, Arrow batches go through ``pyarrow.csv``; with any other, through the
      row path (which quotes a number or date containing the delimiter).
    * ``encoding``: a text encoding that writes ASCII as ASCII bytes (``utf-8``,
      ``latin-1``, ``cp1252``…; not ``utf-16`` or ``utf-8-sig``). A value the encoding
      cannot hold fails its record alone (``ValueError`` naming the sink and the encoding).
    * Columns come from ``fieldnames``, else from an existing header (append mode), else
      from the first record's keys or the first Arrow batch's schema. A header is written
      exactly once per file: in append mode onto a non-empty file, none is written and the
      file's own header fixes the columns (``fieldnames`` that disagree with it are
      refused at ``open()``).
    * A record with keys that are not columns fails on its own (``WriteResult.failed`` with
      a ``ValueError`` naming the sink and the keys) — it is never written truncated (nor
      are extra keys silently dropped). Missing keys are written as nulls. A non-mapping
      record fails with ``TypeError``. An Arrow batch with extra columns fails every row
      the same way; its columns may come in any order.
    * ``write_arrow_batch`` writes through ``pyarrow.csv``; a batch pyarrow rejects is
      written through the row path instead, whole. So is a one-column batch holding nulls:
      pyarrow would write those rows as empty lines, which CSV readers skip, while the csv
      module writes ``""``. ``runtime_metrics`` counts both paths.
    * ``open()`` creates the file (``mode="w"`` truncates; ``"a"`` appends and refuses a
      file whose last line is incomplete). Reopening after ``close()`` appends. Each call
      writes its data in one piece after earlier data, so nothing written before is ever
      truncated. ``flush()`` fsyncs; ``close()`` flushes and is idempotent.
    """

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.PYTHON_BATCHES,
        DataPlane.ARROW_BATCHES,
    )
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = accepted_data_planes
    #: What reaches the CSV writer must be a mapping: the record itself, or what
    #: ``row_mapper`` makes of it.
    requires_mappings: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        row_mapper: Callable[[Any], Mapping[str, Any]] | None = None,
        fieldnames: Sequence[str] | None = None,
        append: bool | None = None,
        flush_every: int = 100,
        delimiter: str = ",",
        encoding: str = "utf-8",
        *,
        mode: str | None = None,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.sink_name = name or f"csv:{self.path.name}"
        self.mode = check_file_mode(self.sink_name, mode_from(self.sink_name, mode, append))
        if row_mapper is not None and not callable(row_mapper):
            raise TypeError(
                f"sink {self.sink_name!r}: row_mapper must be a callable (record -> mapping) "
                f"or None; got {type(row_mapper).__name__}"
            )
        self.row_mapper = row_mapper
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(
                f"sink {self.sink_name!r}: flush_every must be an int >= 1 (rows); got "
                f"{flush_every!r}"
            )
        self.flush_every = flush_every
        self.delimiter = check_delimiter(self.sink_name, delimiter)
        self.encoding = check_encoding(self.sink_name, encoding)
        if fieldnames is not None:
            fieldnames = list(fieldnames)
            _check_names(self.sink_name, fieldnames)
        self._fieldnames = fieldnames
        self._header: list[str] | None = None
        self._header_written = False
        self._fh: BinaryIO | None = None
        self._rows = RowFormatter(self.delimiter, self.encoding)
        self._arrow_options = pa_csv.WriteOptions(
            include_header=False, quoting_style="needed", delimiter=self.delimiter
        )
        # Arrow batches skip pyarrow when a mapper must see each row, or when pyarrow's
        # unquoted cells could contain the delimiter.
        self._arrow_rows_only = (
            row_mapper is not None or self.delimiter not in ARROW_SAFE_DELIMITERS
        )
        self._unhanded_rows = 0
        self.records_written = 0
        self._native_batches = 0
        self._native_rows = 0
        self._downgraded_batches = 0
        self._downgraded_rows = 0

    @property
    def header(self) -> list[str] | None:
        """The file's columns, once known."""
        return list(self._header) if self._header is not None else None

    @property
    def runtime_metrics(self) -> dict[str, int]:
        """Arrow-path counters, merged by the runtime into the run summary."""
        return {
            "csv_arrow_native_batch_count": self._native_batches,
            "csv_arrow_native_row_count": self._native_rows,
            "csv_arrow_downgrade_batch_count": self._downgraded_batches,
            "csv_arrow_downgrade_row_count": self._downgraded_rows,
        }

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or append to the file and settle the header; a reopened sink appends.
        A failure leaves the sink's state unchanged."""
        mode = "a" if ensure_openable(self) else self.mode
        fh = open_output_file(self.sink_name, self.path, mode)
        header: list[str] | None = None
        try:
            if mode == "a" and check_complete_tail(self.sink_name, self.path, fh):
                header = self._read_existing_header()
                if self._fieldnames is not None and self._fieldnames != header:
                    raise ValueError(
                        f"sink {self.sink_name!r}: fieldnames {self._fieldnames} differ from "
                        f"the header {header} of {str(self.path)!r}; append with the file's "
                        f"columns or write to a new file"
                    )
            elif self._fieldnames is not None:
                # Written now so that a run with no records still leaves a valid CSV file.
                fh.write(self._rows.line(self._fieldnames))
                header = list(self._fieldnames)
        except BaseException:
            fh.close()
            raise
        # The file, not memory, says whether a header exists (it may have been replaced
        # between a close() and a reopen).
        self._header, self._header_written = header, header is not None
        self._fh = fh
        await super().open()

    def _read_existing_header(self) -> list[str]:
        try:
            with open(self.path, encoding=self.encoding, newline="") as reader:
                header = next(csv.reader(reader, delimiter=self.delimiter))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            raise ValueError(
                f"sink {self.sink_name!r}: cannot append to {str(self.path)!r}: its header "
                f"row is not readable {self.encoding} CSV with delimiter {self.delimiter!r} "
                f"({exc}); write to a new file, or pass the file's encoding and delimiter"
            ) from exc
        return header

    # -- data ------------------------------------------------------------------------------
    async def write(self, record: Any) -> None:
        self._check_usable("write")
        results = self._write_rows([record])
        if results is not None and results[0].error is not None:
            raise results[0].error

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        return self._write_rows(records)

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        if self._arrow_rows_only:
            return self._downgrade(batch)
        names = batch.schema.names
        _check_names(self.sink_name, names)
        header = self._header if self._header is not None else list(names)
        columns = set(header)
        extra = [n for n in names if n not in columns]
        if extra:
            error = self._extra_keys_error(extra, header)
            return [WriteResult.failed(error) for _ in range(batch.num_rows)]
        if names != header:
            present = set(names)
            batch = pa.RecordBatch.from_arrays(
                [batch.column(n) if n in present else pa.nulls(batch.num_rows) for n in header],
                names=header,
            )
        try:
            if batch.num_columns == 1 and batch.column(0).null_count:
                # pyarrow writes such a row as an empty line, which CSV readers skip (the
                # row would vanish on read-back); the csv module writes "" instead.
                raise pa.ArrowInvalid("one-column batch with nulls")
            out = pa.BufferOutputStream()
            pa_csv.write_csv(batch, out, self._arrow_options)
            chunk = out.getvalue().to_pybytes()
            if self.encoding != "utf-8":
                chunk = chunk.decode("utf-8").encode(self.encoding)
        except _ARROW_REJECTIONS:
            return self._downgrade(batch)  # aligned to the header: the same text
        self._emit(header, chunk, batch.num_rows)
        self._native_batches += 1
        self._native_rows += batch.num_rows
        return None

    def _downgrade(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        """Write an Arrow batch through the row path: one result per row."""
        results = self._write_rows(batch.to_pylist())
        self._downgraded_batches += 1
        self._downgraded_rows += batch.num_rows
        return results

    def _as_row(self, record: Any) -> Mapping[Any, Any]:
        if self.row_mapper is not None:
            row = self.row_mapper(record)
            if not isinstance(row, Mapping):
                raise TypeError(
                    f"sink {self.sink_name!r}: row_mapper must return a mapping (column -> "
                    f"value); it returned {type(row).__name__} for a {type(record).__name__}"
                )
            return row
        if not isinstance(record, Mapping):
            raise TypeError(
                f"sink {self.sink_name!r} writes mappings (one dict per row); got "
                f"{type(record).__name__} — pass row_mapper= to turn records into rows"
            )
        return record

    def _write_rows(self, records: Sequence[Any]) -> list[WriteResult] | None:
        header = self._header
        columns = set(header) if header is not None else set()
        lines: list[bytes] = []
        results: list[WriteResult] = []
        failed = False
        for original in records:
            try:
                record = self._as_row(original)
                if header is None:
                    header = [str(k) for k in record]
                    _check_names(self.sink_name, header)
                    columns = set(header)
                extra = [k for k in record if k not in columns]
                if extra:
                    raise self._extra_keys_error(extra, header)
                lines.append(self._line(record, header))
            except Exception as exc:  # noqa: BLE001 - the record (or its mapper) fails alone
                failed = True
                results.append(WriteResult.failed(exc))
            else:
                results.append(WriteResult.ok())
        if header is not None:
            self._emit(header, b"".join(lines), len(lines))
        return results if failed else None

    def _emit(self, header: list[str], chunk: bytes, rows: int) -> None:
        """Append one call's data (with the header if it is not written yet) in one write."""
        assert self._fh is not None
        if not self._header_written:
            chunk = self._rows.line(header) + chunk
        if chunk:
            self._fh.write(chunk)
        self._header, self._header_written = header, True
        self.records_written += rows
        self._unhanded_rows += rows
        if self._unhanded_rows >= self.flush_every:
            self._fh.flush()  # to the OS: visible to readers; fsync waits for flush()
            self._unhanded_rows = 0

    async def flush(self) -> None:
        """Hand every written row to the OS and fsync: durable when this returns."""
        await super().flush()
        self._unhanded_rows = 0

    def _line(self, record: Mapping[Any, Any], header: Sequence[str]) -> bytes:
        try:
            return self._rows.line([cell(record.get(n)) for n in header])
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"sink {self.sink_name!r}: a value of this record cannot be written in "
                f"encoding {self.encoding!r} ({exc.reason}: {exc.object[exc.start:exc.end]!r})"
                f" — use encoding='utf-8' or clean the value upstream"
            ) from exc

    def _extra_keys_error(self, extra: Sequence[Any], header: Sequence[str]) -> ValueError:
        return ValueError(
            f"sink {self.sink_name!r}: record has keys {list(extra)} that are not columns of "
            f"{str(self.path)!r} (columns: {list(header)}); the record was not written rather "
            f"than silently losing those values — pass fieldnames= listing every column, or "
            f"drop the keys upstream"
        )


def _check_names(sink_name: str, names: Sequence[str]) -> None:
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(
            f"sink {sink_name!r}: duplicate CSV column names {duplicates}; rename them upstream"
        )
