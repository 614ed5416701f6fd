"""Process-isolated batch middleware: a managed worker pool with recovery semantics.

``middleware.py`` holds the two public classes, ``pool.py`` the worker generations
(dispatch, timeouts, deaths; read its diagram first), ``transport.py`` the shared-memory
slots and codecs, ``worker.py`` the worker process.
"""

from __future__ import annotations

from agora.process.middleware import ArrowProcessBatchMiddleware, ProcessBatchMiddleware
from agora.errors import ProcessPoolBrokenError, WorkerStartupError

__all__ = [
    "ArrowProcessBatchMiddleware",
    "ProcessBatchMiddleware",
    "ProcessPoolBrokenError",
    "WorkerStartupError",
]
