"""Import path kept for 0.3.0 programs: ``ParquetSource``."""

from __future__ import annotations

from agora.sources.parquet import ParquetSource

__all__ = ["ParquetSource"]
