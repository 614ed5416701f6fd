"""Hypothesis strategies for Arrow data: schemas, RecordBatches (nulls, NaN, ±inf, unicode,
UTC timestamps), slices with non-zero offsets, row lists and batch partitions.

Generation respects a component's declared ``features`` (see ``conformance.data``): a
value kind the medium does not round-trip is never generated for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from conformance.data import BASIC_FEATURES

__all__ = [
    "arrow_schemas",
    "column_kinds",
    "partitions",
    "record_batches",
    "row_lists",
    "sliced_batches",
]

_UTC = dt.UTC
_MIN_TS = dt.datetime(1970, 1, 1)
_MAX_TS = dt.datetime(2200, 1, 1)


def _text(features: frozenset[str]) -> st.SearchStrategy[str]:
    if "unicode" in features:
        # No surrogates (not encodable as UTF-8) and no control characters (line-based
        # media treat some as record separators; that is a property of the medium).
        alphabet = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    else:
        alphabet = st.characters(min_codepoint=32, max_codepoint=126)
    return st.text(alphabet, min_size=0 if "empty-str" in features else 1, max_size=12)


def _floats(features: frozenset[str]) -> st.SearchStrategy[float]:
    return st.floats(allow_nan="nan" in features, allow_infinity="inf" in features, width=64)


def column_kinds(
    features: Iterable[str] = BASIC_FEATURES,
) -> dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]]:
    """Column kinds available under ``features``: name → (Arrow type, value strategy)."""
    feats = frozenset(features)
    kinds: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {}
    if "int" in feats:
        kinds["f_int"] = (pa.int64(), st.integers(-(2**63), 2**63 - 1))
    if "float" in feats:
        kinds["f_float"] = (pa.float64(), _floats(feats))
    if "str" in feats:
        kinds["f_str"] = (pa.string(), _text(feats))
    if "bool" in feats:
        kinds["f_bool"] = (pa.bool_(), st.booleans())
    if "timestamp" in feats:
        stamps = st.datetimes(min_value=_MIN_TS, max_value=_MAX_TS).map(
            lambda d: d.replace(tzinfo=_UTC)
        )
        kinds["f_ts"] = (pa.timestamp("us", tz="UTC"), stamps)
    return kinds


@st.composite
def arrow_schemas(
    draw: Any, features: Iterable[str] = BASIC_FEATURES, max_fields: int = 4
) -> pa.Schema:
    """A schema: an ``id`` int64 key column plus a non-empty subset of the declared kinds."""
    kinds = column_kinds(features)
    names = draw(
        st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=max_fields, unique=True)
        if kinds
        else st.just([])
    )
    return pa.schema([pa.field("id", pa.int64())] + [pa.field(n, kinds[n][0]) for n in names])


@st.composite
def record_batches(
    draw: Any,
    features: Iterable[str] = BASIC_FEATURES,
    *,
    schema: pa.Schema | None = None,
    min_rows: int = 0,
    max_rows: int = 20,
    id_start: int = 0,
) -> pa.RecordBatch:
    """A RecordBatch over ``schema`` (or a drawn one). ``id`` is ``id_start, id_start+1,
    …`` so every row can be identified after any medium's conversions; other columns are
    drawn, with nulls if ``"null"`` is a declared feature."""
    feats = frozenset(features)
    if schema is None:
        schema = draw(arrow_schemas(feats))
    kinds = column_kinds(feats)
    n = draw(st.integers(min_rows, max_rows))
    columns: list[pa.Array] = [pa.array(range(id_start, id_start + n), pa.int64())]
    for field in list(schema)[1:]:
        values = kinds[field.name][1]
        if "null" in feats:
            values = st.none() | values
        data = draw(st.lists(values, min_size=n, max_size=n))
        columns.append(pa.array(data, type=field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@st.composite
def sliced_batches(
    draw: Any, features: Iterable[str] = BASIC_FEATURES, *, max_rows: int = 20
) -> tuple[pa.RecordBatch, int, int]:
    """``(parent, offset, length)``: write ``parent.slice(offset, length)`` — a view with a
    (usually) non-zero offset into the parent's buffers."""
    parent = draw(record_batches(features, min_rows=1, max_rows=max_rows))
    offset = draw(st.integers(0, parent.num_rows))
    length = draw(st.integers(0, parent.num_rows - offset))
    return parent, offset, length


def row_lists(
    features: Iterable[str] = BASIC_FEATURES, *, max_rows: int = 20
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of records sharing one generated schema (as ``to_pylist`` gives them)."""
    return record_batches(features, max_rows=max_rows).map(lambda b: b.to_pylist())


@st.composite
def partitions(draw: Any, n: int, *, max_parts: int = 8) -> list[int]:
    """Batch sizes summing to ``n``, in order, empty batches included."""
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=max_parts)))
    sizes, prev = [], 0
    for cut in cuts + [n]:
        sizes.append(cut - prev)
        prev = cut
    return sizes
