"""Harnesses for Agora's built-in sinks and sources, and the registry that finds them by
class. Read-backs use the standard readers (csv, json, pyarrow.parquet), never the sinks'
own code; file sources are seeded with files the suite writes itself."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import agora
from conformance.data import ALL_FEATURES
from conformance.dlq_harnesses import JsonLinesDLQSinkHarness, SQLiteDLQSinkHarness
from conformance.harness import Namespace, SinkHarness, SourceHarness
from conformance.media import ARROW_CSV_NULLS, json_row, text_row, to_text

__all__ = [
    "ArrowBatchSourceHarness",
    "ArrowCsvSourceHarness",
    "ArrowJsonLinesSourceHarness",
    "CsvBatchSourceHarness",
    "CsvSinkHarness",
    "CsvSourceHarness",
    "IterableBatchSourceHarness",
    "IterableSourceHarness",
    "JsonLinesSinkHarness",
    "JsonLinesSourceHarness",
    "MemorySinkHarness",
    "NullSinkHarness",
    "ParquetSinkHarness",
    "ParquetSourceHarness",
    "StdoutSinkHarness",
    "builtin_harness_for",
]

#: Rows per emitted batch for the batch sources: small, so the standard data set spans
#: several batches and ends with a partial one.
BATCH = 4


class _Unencodable:
    """A value JSON cannot encode (makes a record invalid for the JSON-lines sink)."""

    def __repr__(self) -> str:
        return "<unencodable>"


def _json_lines(path: Path) -> list[Any]:
    # Split on "\n" only: str.splitlines() would also split inside strings on U+2028 etc.
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line.strip()]


def _json_text(value: Any) -> str:
    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
        return v

    return json.dumps({k: fix(v) for k, v in value.items()}, ensure_ascii=False, default=str)


# -- sinks --------------------------------------------------------------------------------


class MemorySinkHarness(SinkHarness):
    """``MemorySink``: the records of every MemorySink built for the namespace, in order
    (its ``records`` list is the medium; there is nothing else to read)."""

    target: Any = agora.MemorySink
    features = ALL_FEATURES
    accepts_any_record = True

    def build(self, ns: Namespace) -> Any:
        return agora.MemorySink(name="memory")

    def build_append(self, ns: Namespace) -> Any:
        return agora.MemorySink(name="memory")

    def read_back(self, ns: Namespace) -> list[Mapping[str, Any]]:
        return [
            r
            for s in ns.components
            if isinstance(s, agora.MemorySink)
            for r in s.records
            if isinstance(r, Mapping)
        ]


class NullSinkHarness(SinkHarness):
    """``NullSink`` discards by design: integrity checks are unsupported, not passed."""

    target: Any = agora.NullSink
    features = ALL_FEATURES
    persists = False
    accepts_any_record = True

    def build(self, ns: Namespace) -> Any:
        return agora.NullSink()


class StdoutSinkHarness(SinkHarness):
    """``StdoutSink`` on a private text stream per namespace, parsed back with ``json``."""

    target: Any = agora.StdoutSink
    features = ALL_FEATURES
    accepts_any_record = True  # lenient encoding: every record is written

    def __init__(self, target: Any = None, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._streams: dict[str, io.StringIO] = {}

    def _stream(self, ns: Namespace) -> io.StringIO:
        return self._streams.setdefault(str(ns.path), io.StringIO())

    def build(self, ns: Namespace) -> Any:
        return agora.StdoutSink(stream=self._stream(ns))

    def build_append(self, ns: Namespace) -> Any:
        return self.build(ns)

    def read_back(self, ns: Namespace) -> list[Any]:
        text = self._stream(ns).getvalue()
        return [json.loads(line) for line in text.split("\n") if line.strip()]

    def canonical_row(self, row: Any) -> Hashable:
        return json_row(row)

    def cleanup(self, ns: Namespace) -> None:
        self._streams.pop(str(ns.path), None)


class CsvSinkHarness(SinkHarness):
    """``CsvSink`` to ``out.csv``, read back with the ``csv`` module; values compare as
    text cells (an empty cell and null are the same thing in CSV)."""

    target: Any = agora.CsvSink
    features = ALL_FEATURES - {"empty-str"}

    def path(self, ns: Namespace) -> Path:
        return ns.path / "out.csv"

    def build(self, ns: Namespace) -> Any:
        return agora.CsvSink(self.path(ns))

    def build_append(self, ns: Namespace) -> Any:
        return agora.CsvSink(self.path(ns), mode="a")

    def read_back(self, ns: Namespace) -> list[dict[str, str]]:
        path = self.path(ns)
        if not path.exists():
            return []
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))

    def invalid_record(self) -> Any:
        return {"id": -1, "zz_not_a_column": "x"}

    def canonical_row(self, row: Any) -> Hashable:
        return text_row(row)


class JsonLinesSinkHarness(SinkHarness):
    """``JsonLinesSink`` to ``out.jsonl``, read back line by line with ``json``."""

    target: Any = agora.JsonLinesSink
    features = ALL_FEATURES

    def path(self, ns: Namespace) -> Path:
        return ns.path / "out.jsonl"

    def build(self, ns: Namespace) -> Any:
        return agora.JsonLinesSink(self.path(ns))

    def build_append(self, ns: Namespace) -> Any:
        return agora.JsonLinesSink(self.path(ns), mode="a")

    def read_back(self, ns: Namespace) -> list[Any]:
        return _json_lines(self.path(ns))

    def invalid_record(self) -> Any:
        return {"id": -1, "value": _Unencodable()}

    def canonical_row(self, row: Any) -> Hashable:
        return json_row(row)


class ParquetSinkHarness(SinkHarness):
    """``ParquetSink`` to ``out.parquet``, read back with ``pyarrow.parquet``: the output
    (a dataset folder, read as one table: the parts ``flush()`` made durable), then every
    other complete Parquet file in the namespace, skipping files without a footer."""

    target: Any = agora.ParquetSink
    features = ALL_FEATURES

    def path(self, ns: Namespace) -> Path:
        return ns.path / "out.parquet"

    def build(self, ns: Namespace) -> Any:
        # Generated data can start with an all-null column; the check's schema avoids
        # pinning a null type from the first batch (ParquetSink documents `schema=` for it).
        return agora.ParquetSink(self.path(ns), schema=ns.state.get("schema"))

    def read_back(self, ns: Namespace) -> list[dict[str, Any]]:
        main = self.path(ns)
        files = sorted(
            (p for p in ns.path.iterdir() if p.is_file()), key=lambda p: (p != main, p.name)
        )
        rows: list[dict[str, Any]] = []
        if main.is_dir():
            rows.extend(pq.read_table(main).to_pylist())
        for file in files:
            try:
                table = pq.read_table(file)
            except (pa.ArrowInvalid, OSError):
                continue  # not (yet) a complete Parquet file
            rows.extend(table.to_pylist())
        return rows

    def invalid_record(self) -> Any:
        return {"id": -1, "zz_not_a_column": 1}


# -- sources ------------------------------------------------------------------------------


class IterableSourceHarness(SourceHarness):
    """``IterableSource`` over the seeded rows (kept in the namespace state). An in-memory
    iterable has no identity to put in a checkpoint, so ``input_identity`` is False."""

    target: Any = agora.IterableSource
    features = ALL_FEATURES
    input_identity = False

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        ns.state["rows"] = [dict(r) for r in rows]

    def build(self, ns: Namespace) -> Any:
        return agora.IterableSource([dict(r) for r in ns.state.get("rows", [])])


class IterableBatchSourceHarness(IterableSourceHarness):
    """``IterableBatchSource`` over the seeded rows in lists of 4."""

    target: Any = agora.IterableBatchSource

    def build(self, ns: Namespace) -> Any:
        rows = [dict(r) for r in ns.state.get("rows", [])]
        return agora.IterableBatchSource([rows[i : i + BATCH] for i in range(0, len(rows), BATCH)])


class ArrowBatchSourceHarness(IterableSourceHarness):
    """``ArrowBatchSource`` over the seeded rows as a table, 4 rows per batch."""

    target: Any = agora.ArrowBatchSource

    def build(self, ns: Namespace) -> Any:
        return agora.ArrowBatchSource(
            pa.Table.from_pylist(ns.state.get("rows", [])), batch_size=BATCH
        )


class CsvSourceHarness(SourceHarness):
    """``CsvSource`` over a CSV file the suite writes with the ``csv`` module; values
    compare as text cells."""

    target: Any = agora.CsvSource
    features = ALL_FEATURES - {"empty-str"}
    nulls: frozenset[str] = frozenset({""})

    def path(self, ns: Namespace) -> Path:
        return ns.path / "in.csv"

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        with self.path(ns).open("w", encoding="utf-8", newline="") as fh:
            if rows:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows({k: to_text(v) for k, v in r.items()} for r in rows)

    def build(self, ns: Namespace) -> Any:
        return agora.CsvSource(self.path(ns))

    def canonical_row(self, row: Any) -> Hashable:
        return text_row(row, self.nulls)


class CsvBatchSourceHarness(CsvSourceHarness):
    """``CsvSource(batch_size=4)``: the Python-batches variant of the CSV source."""

    def build(self, ns: Namespace) -> Any:
        return agora.CsvSource(self.path(ns), batch_size=BATCH)


class ArrowCsvSourceHarness(CsvSourceHarness):
    """``ArrowCsvSource`` (4 rows per batch) over a suite-written CSV file. pyarrow reads
    its default null spellings (``NA``, ``null``, ``nan``, …) as null, so those compare as
    null and NaN is not a value this medium can carry."""

    target: Any = agora.ArrowCsvSource
    features = ALL_FEATURES - {"empty-str", "nan"}
    nulls = ARROW_CSV_NULLS

    def build(self, ns: Namespace) -> Any:
        return agora.ArrowCsvSource(self.path(ns), batch_size=BATCH)


class JsonLinesSourceHarness(SourceHarness):
    """``JsonLinesSource`` over a JSON-lines file the suite writes (NaN/±inf as the
    strings ``NaN``/``Infinity``, timestamps as ISO text, like the JSON-lines sink)."""

    target: Any = agora.JsonLinesSource
    features = ALL_FEATURES

    def path(self, ns: Namespace) -> Path:
        return ns.path / "in.jsonl"

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        self.path(ns).write_text("".join(_json_text(r) + "\n" for r in rows), encoding="utf-8")

    def build(self, ns: Namespace) -> Any:
        return agora.JsonLinesSource(self.path(ns))

    def canonical_row(self, row: Any) -> Hashable:
        return json_row(row)


class ArrowJsonLinesSourceHarness(JsonLinesSourceHarness):
    """``ArrowJsonLinesSource`` with small blocks (several batches) and the seeded data's
    schema (so a first block of nulls does not pin a null type). JSON text cannot put
    NaN/±inf or timestamps in a typed Arrow column, so those are not generated."""

    target: Any = agora.ArrowJsonLinesSource
    features = ALL_FEATURES - {"nan", "inf", "timestamp"}

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        super().seed_data(ns, rows)
        ns.state["schema"] = pa.Table.from_pylist(rows).schema if rows else None

    def build(self, ns: Namespace) -> Any:
        return agora.ArrowJsonLinesSource(
            self.path(ns), block_size=256, schema=ns.state.get("schema")
        )


class ParquetSourceHarness(SourceHarness):
    """``ParquetSource`` (4 rows per batch) over a file written with ``pyarrow.parquet``
    in row groups of 5, so batches and row groups do not line up."""

    target: Any = agora.ParquetSource
    features = ALL_FEATURES

    def path(self, ns: Namespace) -> Path:
        return ns.path / "in.parquet"

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        pq.write_table(pa.Table.from_pylist(rows), self.path(ns), row_group_size=5)

    def build(self, ns: Namespace) -> Any:
        return agora.ParquetSource(self.path(ns), batch_size=BATCH)


_REGISTRY: dict[type, type[SinkHarness] | type[SourceHarness]] = {
    h.target: h
    for h in (
        MemorySinkHarness,
        NullSinkHarness,
        StdoutSinkHarness,
        CsvSinkHarness,
        JsonLinesSinkHarness,
        ParquetSinkHarness,
        IterableSourceHarness,
        IterableBatchSourceHarness,
        ArrowBatchSourceHarness,
        CsvSourceHarness,
        ArrowCsvSourceHarness,
        JsonLinesSourceHarness,
        ArrowJsonLinesSourceHarness,
        ParquetSourceHarness,
        SQLiteDLQSinkHarness,
        JsonLinesDLQSinkHarness,
    )
}


def builtin_harness_for(cls: Any) -> type[SinkHarness] | type[SourceHarness] | None:
    """The built-in harness class for exactly ``cls`` (subclasses may construct differently,
    so they are not matched), or None."""
    return _REGISTRY.get(cls) if isinstance(cls, type) else None
