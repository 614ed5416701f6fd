"""Import path kept for 0.3.0 plugins: DLQ records, DLQ sinks, and reading a DLQ back.

``DLQSink`` is 0.3.0's base class (``replay()`` / ``acknowledge()`` for subclasses) and
the engine's DLQ seam at once. ``SQLiteDLQSource`` is :class:`agora.sources.dlq.DLQSource`,
which reads either DLQ format, and 0.3.0's own SQLite DLQ files."""

from __future__ import annotations

from agora.protocols import DLQSink
from agora.records import DLQRecord
from agora.sources.dlq import DLQSource
from agora.stores import JsonLinesDLQSink, SQLiteDLQSink

SQLiteDLQSource = DLQSource

# ``__all__`` names only what ``agora`` itself exports; the readers are importable by name.
__all__ = ["DLQRecord", "DLQSink", "JsonLinesDLQSink", "SQLiteDLQSink"]

_EXTRAS = (DLQSource, SQLiteDLQSource)
