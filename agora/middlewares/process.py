"""Import path kept for 0.3.0 programs: process-isolated batch middleware."""

from __future__ import annotations

from agora.process import ArrowProcessBatchMiddleware, ProcessBatchMiddleware

__all__ = ["ArrowProcessBatchMiddleware", "ProcessBatchMiddleware"]
