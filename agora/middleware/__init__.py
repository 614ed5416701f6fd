"""Middleware contracts and built-ins."""

from agora.middleware.base import (
    ArrowBatchMiddleware,
    BatchMiddleware,
    Middleware,
    MiddlewareContext,
)
from agora.middleware.builtins import (
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    FilterMiddleware,
    MapMiddleware,
)

__all__ = [
    "ArrowBatchMiddleware",
    "ArrowFilterMiddleware",
    "ArrowMapMiddleware",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "BatchMiddleware",
    "FilterMiddleware",
    "MapMiddleware",
    "Middleware",
    "MiddlewareContext",
]
