"""Import path kept for 0.3.0 programs: the built-in middleware."""

from __future__ import annotations

from agora.middleware import (
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    FilterMiddleware,
    MapMiddleware,
)

__all__ = ["ArrowFilterMiddleware", "ArrowMapMiddleware", "BatchFilterMiddleware", "BatchMapMiddleware", "FilterMiddleware", "MapMiddleware"]
