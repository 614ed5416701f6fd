"""Import path kept for 0.3.0 programs: process-isolated batch middleware and its error."""

from __future__ import annotations

from agora.errors import ProcessBatchError
from agora.process import ArrowProcessBatchMiddleware, ProcessBatchMiddleware

__all__ = ["ArrowProcessBatchMiddleware", "ProcessBatchError", "ProcessBatchMiddleware"]
