"""Fitting rows and Arrow batches to a Parquet sink's schema, with errors that name the differing fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agora.records import WriteResult

__all__ = [
    "castable",
    "conform_batch",
    "infer_batch",
    "null_mask",
    "required_fields",
    "rows_to_batch",
]

_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def castable(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether a safe cast src → dst is a mere widening / re-encoding, never a parse."""
    t = pa.types
    if src.equals(dst) or t.is_null(src):
        return True
    families = (
        (t.is_integer, t.is_integer),
        (t.is_integer, t.is_floating),
        (t.is_floating, t.is_floating),
        (t.is_decimal, t.is_decimal),
        (lambda x: t.is_string(x) or t.is_large_string(x),
         lambda x: t.is_string(x) or t.is_large_string(x)),
        (lambda x: t.is_binary(x) or t.is_large_binary(x),
         lambda x: t.is_binary(x) or t.is_large_binary(x)),
        (t.is_date, t.is_date),
        (t.is_time, t.is_time),
        (t.is_duration, t.is_duration),
    )
    if any(a(src) and b(dst) for a, b in families):
        return True
    if t.is_timestamp(src) and t.is_timestamp(dst):
        return bool(src.tz == dst.tz)  # a timezone change is a reinterpretation, not a widening
    if (t.is_list(src) or t.is_large_list(src)) and (t.is_list(dst) or t.is_large_list(dst)):
        return castable(src.value_type, dst.value_type)
    if t.is_struct(src) and t.is_struct(dst):
        if [f.name for f in src] != [f.name for f in dst]:
            return False
        return all(castable(a.type, b.type) for a, b in zip(src, dst, strict=True))
    return False


def infer_batch(sink_name: str, rows: list[Any]) -> pa.RecordBatch:
    """The first batch of a sink without a schema: its schema is inferred from ``rows``.
    Raises ValueError naming the sink if no schema can be inferred."""
    try:
        return pa.RecordBatch.from_pylist(rows)
    except _CONVERSION_ERRORS as exc:
        raise ValueError(
            f"sink {sink_name!r} cannot infer a Parquet schema from the first "
            f"batch ({exc}); pass schema= to the sink"
        ) from exc


def rows_to_batch(
    sink_name: str,
    schema: pa.Schema,
    rows: list[Any],
    results: list[WriteResult | None],
    index: list[int],
) -> tuple[pa.RecordBatch, list[int]]:
    """Rows → one batch of ``schema``, with the positions (in ``results``) of the rows it
    holds. A record that cannot be converted, or holds a null in a non-nullable field, is
    left out and gets a failed result (``index`` maps rows to positions in ``results``)."""
    try:
        batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    except _CONVERSION_ERRORS:
        # Slow path, only on failure: find the records that do not convert.
        good: list[pa.RecordBatch] = []
        kept: list[int] = []
        for pos, row in zip(index, rows, strict=True):
            try:
                good.append(pa.RecordBatch.from_pylist([row], schema=schema))
                kept.append(pos)
            except _CONVERSION_ERRORS as exc:
                results[pos] = WriteResult.failed(ValueError(
                    f"sink {sink_name!r}: record does not fit the Parquet schema "
                    f"({exc})"
                ))
        table = pa.Table.from_batches(good, schema=schema).combine_chunks()
        batch = (table.to_batches()[0] if table.num_rows
                 else pa.RecordBatch.from_pylist([], schema=schema))
        index = kept
    # from_pylist does not enforce nullability; a null in a required field would make
    # the file lie about its schema, so those records fail here.
    bad = null_mask(schema, batch)
    if bad is not None:
        for pos, is_bad in zip(index, bad.to_pylist(), strict=True):
            if is_bad:
                results[pos] = WriteResult.failed(ValueError(
                    f"sink {sink_name!r}: record has a null in a non-nullable field "
                    f"of the Parquet schema ({required_fields(schema)})"
                ))
        index = [pos for pos, is_bad in zip(index, bad.to_pylist(), strict=True)
                 if not is_bad]
        batch = batch.filter(pc.invert(bad))
    return batch, index

def required_fields(schema: pa.Schema) -> list[str]:
    """The names of ``schema``'s non-nullable fields."""
    return [f.name for f in schema if not f.nullable]

def null_mask(schema: pa.Schema, batch: pa.RecordBatch) -> pa.BooleanArray | None:
    """True for the rows of ``batch`` with a null in a non-nullable field; None if none."""
    mask = None
    for name in required_fields(schema):
        column = batch.column(name)
        if column.null_count:
            nulls = column.is_null()
            mask = nulls if mask is None else pc.or_(mask, nulls)
    return mask

def conform_batch(
    sink_name: str, path: Path, schema: pa.Schema, batch: pa.RecordBatch
) -> pa.RecordBatch:
    """Return ``batch`` in the file's ``schema`` (widening casts only), or raise
    ValueError naming the sink, the file and every differing field."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    have, want = batch.schema.names, schema.names
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing or extra or len(set(have)) != len(have):
        raise ValueError(
            f"sink {sink_name!r}: batch fields do not match the Parquet schema of "
            f"{str(path)!r}: missing {missing}, unexpected {extra}"
            f"{', duplicate names' if len(set(have)) != len(have) else ''}"
        )
    if have != want:
        batch = batch.select(want)
    problems = []
    for field in schema:
        src = batch.schema.field(field.name)
        column = batch.column(field.name)
        if not castable(src.type, field.type):
            problems.append(f"{field.name!r}: batch has {src.type}, file has {field.type}")
        elif not field.nullable and column.null_count:
            problems.append(f"{field.name!r}: {column.null_count} null(s) in a non-nullable "
                            f"field")
    if problems:
        raise ValueError(
            f"sink {sink_name!r}: batch does not match the Parquet schema of "
            f"{str(path)!r}: {'; '.join(problems)} — cast the batch upstream or pass a "
            f"schema= that fits every batch"
        )
    try:
        return batch.cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"sink {sink_name!r}: batch values do not fit the Parquet schema of "
            f"{str(path)!r} ({exc})"
        ) from exc
