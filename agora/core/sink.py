"""Import path kept for 0.3.0 plugins: the sink contract, fan-out and router."""

from __future__ import annotations

from agora.records import WriteResult
from agora.sinks import BaseSink, SinkFanOut, SinkRouter

__all__ = ["BaseSink", "SinkFanOut", "SinkRouter", "WriteResult"]
