"""Sources: the contract (``BaseSource``), the ``max_records`` wrapper, and the built-ins."""

from __future__ import annotations

from agora.sources._builtin import OnMalformed
from agora.sources.base import BaseSource, LimitedSource
from agora.sources.csv import ArrowCsvSource, CsvSource
from agora.sources.iterable import (
    ArrowBatchSource,
    IterableBatchSource,
    IterableSource,
)
from agora.sources.jsonl import ArrowJsonLinesSource, JsonLinesSource
from agora.sources.parquet import ParquetSource

__all__ = [
    "ArrowBatchSource",
    "ArrowCsvSource",
    "ArrowJsonLinesSource",
    "BaseSource",
    "CsvSource",
    "IterableBatchSource",
    "IterableSource",
    "JsonLinesSource",
    "LimitedSource",
    "OnMalformed",
    "ParquetSource",
]
