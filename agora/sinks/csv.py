"""``CsvSink``: rows and batches through the csv module, Arrow batches through
``pyarrow.csv`` with a per-batch downgrade to the row path when pyarrow rejects a batch.

CSV dialect (both paths write the same text for the same data wherever they can):
UTF-8, ``,`` delimiter, ``\\n`` line ends, exactly one header row. Strings (and the header)
are always double-quoted, embedded quotes doubled; null / missing values are an empty,
unquoted field, so ``None`` and ``""`` stay distinguishable (``,,`` vs ``,"",``). Numbers,
booleans (``true`` / ``false``), dates and times are unquoted. Floats use pyarrow's
shortest round-trip format (``1``, ``0.1``, ``1e+20``, ``1e-7``, ``nan``, ``inf``, ``-0``).
Timestamps: ``2020-01-02 03:04:05.000000`` (microseconds); timezone-aware ones in their
zone's wall time with ``Z`` (UTC) or a ``+0100``-style offset. Durations: an integer
count of the column's unit (row path: microseconds). Bytes: UTF-8 text (row path: invalid
bytes as ``\\xNN`` escapes). Lists and dicts (row path only — pyarrow cannot write nested
columns, so such batches downgrade): compact JSON text, quoted.

Known differences between the paths: a ``float32`` column is written by pyarrow at float32
precision (``0.1``) but as the widened float64 value (``0.10000000149011612``) when its
batch downgrades; timestamps of a unit other than microseconds get that unit's digits on
the Arrow path only; a ``+00:00`` zone is written ``+0000`` by pyarrow but ``Z`` by the row
path (Python cannot tell it from UTC).
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import io
import math
import numbers
import os
from collections import Counter
from collections.abc import Mapping, Sequence
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
    open_output_file,
)
from agora.sinks.jsonl import encode_json_line

__all__ = ["CsvSink", "format_float"]

# pyarrow refuses some batches (nested types, invalid UTF-8 in binary columns, types it
# has no CSV cast for); those and only those are downgraded to the row path.
_ARROW_REJECTIONS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
_ARROW_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


class _Bare:
    """A pre-formatted cell the csv writer leaves unquoted.

    With ``QUOTE_NONNUMERIC`` the csv module quotes every field that is not a number; it
    tests "number" by the presence of ``__float__``, so this class defines one. Fields that
    contain a delimiter, quote or newline are still quoted by the writer.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __float__(self) -> float:  # never called; only marks the cell as numeric
        raise TypeError("a pre-formatted CSV cell is not a number")


_NULL = _Bare("")
_TRUE = _Bare("true")
_FALSE = _Bare("false")
_ONE_MICROSECOND = _dt.timedelta(microseconds=1)


def format_float(value: float) -> str:
    """Format a float the way pyarrow's CSV writer does: shortest round-trip digits, fixed
    notation for decimal exponents -6..9, otherwise ``d.ddde±x`` (no exponent padding)."""
    if not math.isfinite(value):
        return repr(value)  # nan, inf, -inf: pyarrow's spelling too
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite, so never 'n'/'N'/'F'
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # value = 0.<digits> × 10**point
    exp10 = point - 1
    if -6 <= exp10 <= 9:
        if point <= 0:
            body = "0." + "0" * -point + digits
        elif point >= len(digits):
            body = digits + "0" * (point - len(digits))
        else:
            body = digits[:point] + "." + digits[point:]
    else:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        body = f"{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10)}"
    return ("-" if sign else "") + body


def _cell(value: Any) -> Any:
    """One value as the csv writer should see it: ``str`` (quoted) or ``_Bare`` (not)."""
    if value is None:
        return _NULL
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, numbers.Integral):
        return _Bare(str(int(value)))
    if isinstance(value, decimal.Decimal):
        return _Bare(format(value, "f"))
    if isinstance(value, numbers.Real):
        return _Bare(format_float(float(value)))
    if isinstance(value, _dt.datetime):
        return _Bare(_format_datetime(value))
    if isinstance(value, _dt.date):
        return _Bare(value.isoformat())
    if isinstance(value, _dt.time):
        return _Bare(value.isoformat(timespec="microseconds"))
    if isinstance(value, _dt.timedelta):
        return _Bare(str(value // _ONE_MICROSECOND))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, (list, tuple, dict)):
        return encode_json_line(value, lenient=True).decode("utf-8").rstrip("\n")
    return str(value)


def _format_datetime(value: _dt.datetime) -> str:
    """pyarrow's timestamp[us] text: local wall time, then ``Z`` for UTC or ``±HHMM``."""
    local = value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    offset = value.utcoffset()
    if offset is None:
        return local
    if value.tzinfo is _dt.UTC or str(value.tzinfo) == "UTC":
        return local + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{local}{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


class _RowFormatter:
    """Formats rows one line at a time, so one bad row fails alone."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(
            self._buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n"
        )

    def line(self, cells: Sequence[Any]) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue().encode("utf-8")


class CsvSink(TextFileSink):
    """Writes records to a CSV file (dialect and formats: see the module docstring).

    * Columns come from ``fieldnames``, else from an existing header (append mode), else
      from the first record's keys or the first Arrow batch's schema. A header is written
      exactly once per file: in append mode onto a non-empty file, none is written and the
      file's own header fixes the columns (``fieldnames`` that disagree with it are
      refused at ``open()``).
    * A record with keys that are not columns fails on its own (``WriteResult.failed`` with
      a ``ValueError`` naming the sink and the keys) — it is never written truncated. Missing
      keys are written as nulls. A non-mapping record fails with ``TypeError``. An Arrow
      batch with extra columns fails every row the same way; its columns may come in any
      order.
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
    requires_mappings: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "w",
        fieldnames: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.sink_name = name or f"csv:{self.path.name}"
        self.mode = check_file_mode(self.sink_name, mode)
        if fieldnames is not None:
            fieldnames = list(fieldnames)
            _check_names(self.sink_name, fieldnames)
        self._fieldnames = fieldnames
        self._header: list[str] | None = None
        self._header_written = False
        self._fh: BinaryIO | None = None
        self._rows = _RowFormatter()
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
            with open(self.path, encoding="utf-8", newline="") as reader:
                header = next(csv.reader(reader))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            raise ValueError(
                f"sink {self.sink_name!r}: cannot append to {str(self.path)!r}: its header "
                f"row is not readable UTF-8 CSV ({exc}); write to a new file"
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
            pa_csv.write_csv(batch, out, _ARROW_OPTIONS)
            chunk = out.getvalue().to_pybytes()
            downgraded = False
        except _ARROW_REJECTIONS:
            chunk = b"".join(
                self._rows.line([_cell(row[n]) for n in header]) for row in batch.to_pylist()
            )
            downgraded = True
        self._emit(header, chunk, batch.num_rows)
        if downgraded:
            self._downgraded_batches += 1
            self._downgraded_rows += batch.num_rows
        else:
            self._native_batches += 1
            self._native_rows += batch.num_rows
        return None

    def _write_rows(self, records: Sequence[Any]) -> list[WriteResult] | None:
        header = self._header
        columns = set(header) if header is not None else set()
        lines: list[bytes] = []
        results: list[WriteResult] = []
        failed = False
        for record in records:
            try:
                if not isinstance(record, Mapping):
                    raise TypeError(
                        f"sink {self.sink_name!r} writes mappings (one dict per row); got "
                        f"{type(record).__name__}"
                    )
                if header is None:
                    header = [str(k) for k in record]
                    _check_names(self.sink_name, header)
                    columns = set(header)
                extra = [k for k in record if k not in columns]
                if extra:
                    raise self._extra_keys_error(extra, header)
                lines.append(self._rows.line([_cell(record.get(n)) for n in header]))
            except (TypeError, ValueError) as exc:
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
