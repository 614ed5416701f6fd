"""How ``CsvSink`` turns values into CSV text: the dialect both its write paths share.

CSV dialect (both paths write the same text for the same data wherever they can): UTF-8
and ``,`` by default (``encoding=``, ``delimiter=``), ``\\n`` line ends, exactly one
header row. Strings (and the header) are always double-quoted, embedded quotes doubled;
null / missing values are an empty, unquoted field, so ``None`` and ``""`` stay
distinguishable (``,,`` vs ``,"",``). Numbers, booleans (``true`` / ``false``), dates
and times are unquoted. Floats use pyarrow's shortest round-trip format (``1``, ``0.1``,
``1e+20``, ``1e-7``, ``nan``, ``inf``, ``-0``). Timestamps: ``2020-01-02
03:04:05.000000`` (microseconds); timezone-aware ones in their zone's wall time with
``Z`` (UTC) or a ``+0100``-style offset. Durations: an integer count of the column's
unit (row path: microseconds). Bytes: UTF-8 text (row path: invalid bytes as ``\\xNN``
escapes). Lists and dicts (row path only — pyarrow cannot write nested columns, so such
batches downgrade): compact JSON text, quoted.

Known differences between the paths: a ``float32`` column is written by pyarrow at float32
precision (``0.1``) but as the widened float64 value (``0.10000000149011612``) when its
batch downgrades; timestamps of a unit other than microseconds get that unit's digits on
the Arrow path only; a ``+00:00`` zone is written ``+0000`` by pyarrow but ``Z`` by the row
path (Python cannot tell it from UTC).
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import decimal
import io
import math
import numbers
from collections.abc import Sequence
from typing import Any

from agora.sinks.jsonl import encode_json_line

__all__ = [
    "ARROW_SAFE_DELIMITERS",
    "RowFormatter",
    "cell",
    "check_delimiter",
    "check_encoding",
    "format_float",
]

# Delimiters no unquoted cell (number, date, time, timestamp, true/false) can contain:
# pyarrow never quotes those cells, so with any other delimiter its output could split a
# cell; every batch then takes the row path, which quotes such a cell.
ARROW_SAFE_DELIMITERS = (",", ";", "\t", "|")
# Characters whose encoding must be the ASCII bytes: the sink finds line ends and the
# header by their bytes, and appends encoded chunks one after another.
_ASCII_PROBE = 'a,;|\t"\n0'


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


def cell(value: Any) -> Any:
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


class RowFormatter:
    """Formats rows one line at a time, so one bad row fails alone."""

    def __init__(self, delimiter: str = ",", encoding: str = "utf-8") -> None:
        self._buffer = io.StringIO()
        self._encoding = encoding
        self._writer = csv.writer(
            self._buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n",
            delimiter=delimiter,
        )

    def line(self, cells: Sequence[Any]) -> bytes:
        """One CSV line; raises UnicodeEncodeError if the encoding cannot hold a value."""
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue().encode(self._encoding)


def check_delimiter(sink_name: str, delimiter: Any) -> str:
    if (not isinstance(delimiter, str) or len(delimiter) != 1 or not delimiter.isascii()
            or delimiter in '"\r\n'):
        raise ValueError(
            f"sink {sink_name!r}: delimiter must be one ASCII character other than '\"', CR "
            f"and LF; got {delimiter!r}"
        )
    return delimiter


def check_encoding(sink_name: str, encoding: Any) -> str:
    """The codec's canonical name, if it writes ASCII as the same bytes."""
    try:
        name = codecs.lookup(encoding).name
        ascii_safe = _ASCII_PROBE.encode(name) == _ASCII_PROBE.encode("ascii")
    except (LookupError, TypeError, UnicodeError):
        ascii_safe, name = False, str(encoding)
    if not ascii_safe:
        raise ValueError(
            f"sink {sink_name!r}: encoding must be a text encoding that writes ASCII "
            f"unchanged, such as 'utf-8', 'latin-1' or 'cp1252'; got {encoding!r} — CSV "
            f"files in UTF-16 or with a byte-order mark cannot be appended to safely"
        )
    return name
