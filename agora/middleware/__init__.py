"""Middleware contracts and built-ins."""

from __future__ import annotations


from agora.middleware.base import (
    AnyMiddleware,
    ArrowBatchMiddleware,
    ArrowRowFilter,
    BatchMiddleware,
    Middleware,
    MiddlewareContext,
    MiddlewareKind,
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
    "AnyMiddleware",
    "ArrowBatchMiddleware",
    "ArrowFilterMiddleware",
    "ArrowMapMiddleware",
    "ArrowRowFilter",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "BatchMiddleware",
    "FilterMiddleware",
    "MapMiddleware",
    "Middleware",
    "MiddlewareContext",
    "MiddlewareKind",
]
