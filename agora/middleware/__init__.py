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
from agora.middleware.io import AsyncMiddleware, Backpressure, RetryPolicy
from agora.middleware.builtins import (
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    BatchApplyMiddleware,
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
    "AsyncMiddleware",
    "Backpressure",
    "BatchApplyMiddleware",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "BatchMiddleware",
    "FilterMiddleware",
    "MapMiddleware",
    "Middleware",
    "MiddlewareContext",
    "MiddlewareKind",
    "RetryPolicy",
]
