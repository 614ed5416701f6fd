"""Import path kept for 0.3.0 programs: ``StdoutSink``."""

from __future__ import annotations

from agora.sinks.simple import StdoutSink

__all__ = ["StdoutSink"]
