"""Import path kept for 0.3.0 programs: the file sources."""

from __future__ import annotations

from agora.sources import (
    ArrowCsvSource,
    ArrowJsonLinesSource,
    CsvSource,
    JsonLinesSource,
    ParquetSource,
)

__all__ = ["ArrowCsvSource", "ArrowJsonLinesSource", "CsvSource", "JsonLinesSource", "ParquetSource"]
