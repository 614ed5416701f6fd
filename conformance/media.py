"""Comparison forms for lossy media: text cells (CSV, where every value comes back as a
string) and JSON values (where NaN, ±inf and timestamps travel as strings)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Hashable, Mapping
from typing import Any

from conformance.data import NAN, canonical_row, canonical_value

__all__ = [
    "ARROW_CSV_NULLS",
    "json_cell",
    "json_row",
    "text_cell",
    "text_row",
    "to_text",
]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")
#: Strings pyarrow's CSV reader reads as null by default.
ARROW_CSV_NULLS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "n/a",
        "nan",
        "null",
    }
)
_JSON_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_text(value: Any) -> str:
    """How a value is spelled in a text file written by the suite (seeding file sources)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _number(value: decimal.Decimal) -> Hashable:
    if value.is_nan():
        return NAN
    return value.normalize() if value.is_finite() else value


def _datetime(text: str) -> Hashable | None:
    if not _ISO_DATE.match(text):
        return None
    try:
        return canonical_value(dt.datetime.fromisoformat(text))
    except ValueError:
        return None


def text_cell(value: Any, nulls: frozenset[str] = frozenset({""})) -> Hashable:
    """Canonical form of a value that went through a text medium.

    Applied to both sides of a comparison: what was written (typed Python values) and
    what was read back (text, or values a typed reader inferred). Numbers compare as
    numbers (``1``, ``1.0`` and ``"1"`` agree), ``true``/``false`` as booleans, ISO
    timestamps as UTC instants, and any spelling in ``nulls`` as None.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _number(decimal.Decimal(value))
    if isinstance(value, float):
        return NAN if math.isnan(value) else _number(decimal.Decimal(repr(value)))
    if isinstance(value, decimal.Decimal):
        return _number(value)
    if isinstance(value, dt.datetime):
        return canonical_value(value)
    text = value if isinstance(value, str) else str(value)
    if text in nulls:
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return _number(decimal.Decimal(text))
    except (decimal.InvalidOperation, ValueError):
        pass
    stamp = _datetime(text)
    return stamp if stamp is not None else text


def text_row(row: Any, nulls: frozenset[str] = frozenset({""})) -> Hashable:
    if not isinstance(row, Mapping):
        return canonical_row(row)
    return tuple(sorted((str(k), text_cell(v, nulls)) for k, v in row.items()))


def json_cell(value: Any) -> Hashable:
    """Canonical form of a value that went through JSON: NaN/±inf may come back as the
    strings ``NaN``/``Infinity``/``-Infinity``, timestamps as ISO-8601 text."""
    if isinstance(value, str):
        if value in _JSON_NON_FINITE:
            value = _JSON_NON_FINITE[value]
        else:
            stamp = _datetime(value)
            if stamp is not None:
                return stamp
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), json_cell(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(json_cell(v) for v in value))
    return canonical_value(value)


def json_row(row: Any) -> Hashable:
    if not isinstance(row, Mapping):
        return canonical_row(row)
    return tuple(sorted((str(k), json_cell(v)) for k, v in row.items()))
