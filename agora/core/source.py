"""Import path kept for 0.3.0 plugins: the source contract."""

from __future__ import annotations

from agora.errors import SourceRecordError
from agora.sources import BaseSource, IterableSource
from agora.sources.base import is_batch_capable_source

__all__ = ["BaseSource", "IterableSource", "SourceRecordError", "is_batch_capable_source"]
