"""Import path kept for 0.3.0 plugins: the middleware contracts and built-ins."""

from __future__ import annotations

from agora.middleware import (
    ArrowBatchMiddleware,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    BatchMiddleware,
    FilterMiddleware,
    MapMiddleware,
    Middleware,
    MiddlewareContext,
)

__all__ = ["ArrowBatchMiddleware", "BatchFilterMiddleware", "BatchMapMiddleware", "BatchMiddleware", "FilterMiddleware", "MapMiddleware", "Middleware", "MiddlewareContext"]
