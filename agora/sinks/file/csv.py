"""Import path kept for 0.3.0 programs: ``CsvSink``."""

from __future__ import annotations

from agora.sinks.csv import CsvSink

__all__ = ["CsvSink"]
