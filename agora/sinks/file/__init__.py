"""Import path kept for 0.3.0 programs: the file sinks."""

from __future__ import annotations

from agora.sinks import CsvSink, JsonLinesSink, ParquetSink

__all__ = ["CsvSink", "JsonLinesSink", "ParquetSink"]
