"""Import path kept for 0.3.0 programs: ``JsonLinesSink``."""

from __future__ import annotations

from agora.sinks.jsonl import JsonLinesSink

__all__ = ["JsonLinesSink"]
