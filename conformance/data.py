"""Test data the checks write and read, and the comparison rules: canonical values (NaN-aware,
time-zone-aware), multisets and readable differences."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = [
    "ALL_FEATURES",
    "BASIC_FEATURES",
    "NAN",
    "canonical_row",
    "canonical_value",
    "describe_multiset_diff",
    "describe_sequence_diff",
    "feature_batch",
    "standard_batch",
    "standard_rows",
]

#: Value kinds a medium may or may not round-trip. Harnesses declare the ones they keep;
#: data generation (fixed and Hypothesis) only uses declared ones.
ALL_FEATURES = frozenset(
    {"int", "float", "str", "bool", "null", "unicode", "nan", "inf", "timestamp", "empty-str"}
)
BASIC_FEATURES = frozenset({"int", "float", "str", "bool", "null", "unicode"})

#: Canonical stand-in for NaN: NaN != NaN would make every comparison of it fail.
NAN = ("<NaN>",)

_UNICODE_NAMES = ("alpha", "βeta", "gamma ɣ", "日本語", "emoji 🎉", "Zoë", "naïve café", "Ωmega")
_ASCII_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
_EPOCH = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def canonical_value(value: Any) -> Hashable:
    """A hashable, comparison-friendly form of ``value``.

    NaN becomes :data:`NAN`; aware datetimes are normalised to UTC; mappings and sequences
    become tuples. Integers and floats keep their own identity (``1 == 1.0`` holds in
    Python, as it does here).
    """
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value
    if isinstance(value, float):
        return NAN if math.isnan(value) else value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return (
                "datetime",
                value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(),
                "UTC",
            )
        return ("datetime", value.isoformat(), None)
    if isinstance(value, (dt.date, dt.time)):
        return (type(value).__name__, value.isoformat())
    if isinstance(value, decimal.Decimal):
        return NAN if value.is_nan() else value
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), canonical_value(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(canonical_value(v) for v in value))
    return ("repr", type(value).__name__, repr(value))


def canonical_row(row: Any) -> Hashable:
    """Canonical form of a record: sorted ``(key, canonical value)`` pairs for mappings."""
    if isinstance(row, Mapping):
        return tuple(sorted((str(k), canonical_value(v)) for k, v in row.items()))
    return canonical_value(row)


def standard_rows(
    n: int, features: Iterable[str] = BASIC_FEATURES, *, start: int = 0
) -> list[dict[str, Any]]:
    """``n`` deterministic records with the columns ``id, name, score, flag, note``.

    Every record has every column (so any medium can hold them); values only use the
    declared ``features``. ``id`` is unique, so a record can be found again after any
    medium's conversions.
    """
    feats = frozenset(features)
    names = _UNICODE_NAMES if "unicode" in feats else _ASCII_NAMES
    rows: list[dict[str, Any]] = []
    for i in range(start, start + n):
        row: dict[str, Any] = {"id": i}
        if "str" in feats:
            row["name"] = f"{names[i % len(names)]} {i}"
        if "float" in feats:
            row["score"] = round(i * 1.25 - 3.5, 2)
        if "bool" in feats:
            row["flag"] = i % 2 == 0
        if "str" in feats:
            row["note"] = None if ("null" in feats and i % 3 == 1) else f"note-{i}"
        rows.append(row)
    return rows


def standard_batch(
    n: int, features: Iterable[str] = BASIC_FEATURES, *, start: int = 0
) -> pa.RecordBatch:
    """:func:`standard_rows` as a RecordBatch with explicit types (int64, string, float64, bool)."""
    rows = standard_rows(n, features, start=start)
    fields = [pa.field("id", pa.int64())]
    feats = frozenset(features)
    if "str" in feats:
        fields.append(pa.field("name", pa.string()))
    if "float" in feats:
        fields.append(pa.field("score", pa.float64()))
    if "bool" in feats:
        fields.append(pa.field("flag", pa.bool_()))
    if "str" in feats:
        fields.append(pa.field("note", pa.string()))
    return pa.RecordBatch.from_pylist(rows, schema=pa.schema(fields))


def feature_batch(features: Iterable[str]) -> pa.RecordBatch:
    """A small batch exercising every declared feature: nulls in every column, NaN, ±inf,
    unicode, empty strings and UTC timestamps (each only if declared)."""
    feats = frozenset(features)
    n = 6
    columns: dict[str, pa.Array] = {"id": pa.array(range(n), pa.int64())}
    null = "null" in feats

    def maybe_null(values: list[Any], idx: int = 4) -> list[Any]:
        return [None if (null and i == idx) else v for i, v in enumerate(values)]

    if "float" in feats:
        floats: list[Any] = [0.5, -2.25, 1e10, 3.0, 7.75, -0.125]
        if "nan" in feats:
            floats[1] = float("nan")
        if "inf" in feats:
            floats[2], floats[5] = float("inf"), float("-inf")
        columns["score"] = pa.array(maybe_null(floats), pa.float64())
    if "str" in feats:
        texts = ["plain", "with, comma", 'quote "q"', "x", "tail", "y"]
        if "unicode" in feats:
            texts[3], texts[5] = "日本語 🎉", "Zoë ɣ"
        if "empty-str" in feats:
            texts[0] = ""
        columns["text"] = pa.array(maybe_null(texts), pa.string())
    if "bool" in feats:
        columns["flag"] = pa.array(
            maybe_null([True, False, True, True, False, False], 0), pa.bool_()
        )
    if "int" in feats:
        columns["big"] = pa.array(maybe_null([0, -1, 2**53 + 1, -(2**40), 7, 42], 2), pa.int64())
    if "timestamp" in feats:
        stamps = [_EPOCH + dt.timedelta(days=i, microseconds=i * 1001) for i in range(n)]
        columns["ts"] = pa.array(maybe_null(stamps, 3), pa.timestamp("us", tz="UTC"))
    return pa.RecordBatch.from_pydict(columns)


def _fmt(item: Hashable, limit: int = 160) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_multiset_diff(expected: Sequence[Hashable], actual: Sequence[Hashable]) -> str | None:
    """None if both hold the same items with the same multiplicities, else a readable
    account of what is missing, extra and duplicated."""
    want, got = Counter(expected), Counter(actual)
    if want == got:
        return None
    missing = want - got
    extra = got - want
    parts = [f"expected {len(expected)} record(s), read back {len(actual)}"]
    dup = [k for k in extra if k in want]
    phantom = [k for k in extra if k not in want]
    if missing:
        shown = ", ".join(_fmt(k) for k in list(missing)[:3])
        parts.append(f"{sum(missing.values())} missing (e.g. {shown})")
    if dup:
        shown = ", ".join(_fmt(k) for k in dup[:3])
        parts.append(f"{sum(extra[k] for k in dup)} duplicated (e.g. {shown})")
    if phantom:
        shown = ", ".join(_fmt(k) for k in phantom[:3])
        parts.append(f"{sum(extra[k] for k in phantom)} never written (e.g. {shown})")
    return "; ".join(parts)


def describe_sequence_diff(expected: Sequence[Hashable], actual: Sequence[Hashable]) -> str | None:
    """None if equal, else where the two sequences first differ."""
    if list(expected) == list(actual):
        return None
    for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return f"first difference at position {i}: expected {_fmt(a)}, got {_fmt(b)}"
    return f"expected {len(expected)} item(s), got {len(actual)} (equal up to the shorter)"
