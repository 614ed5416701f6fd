"""Import path kept for 0.3.0 plugins: batch and Arrow middleware, and the two lane probes."""

from __future__ import annotations

from typing import Any

from agora.middleware import (
    ArrowBatchMiddleware,
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    BatchMiddleware,
)
from agora.planes import DataPlane
from agora.sinks.base import as_sink
from agora.sources.base import is_batch_capable_source

__all__ = [
    "ArrowBatchMiddleware",
    "ArrowFilterMiddleware",
    "ArrowMapMiddleware",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "BatchMiddleware",
    "is_arrow_native_sink",
    "is_batch_capable_source",
]


def is_arrow_native_sink(sink: Any) -> bool:
    """True when ``sink`` receives Arrow record batches as they are: a ``BaseSink`` whose
    native planes include ``arrow_batches``, or a duck-typed sink with an async
    ``write_arrow_batch``. False for anything else, including objects that are not sinks
    at all (the planner, not this probe, explains what a sink lacks)."""
    try:
        spec = as_sink(sink, where="is_arrow_native_sink()").data_plane_spec()
    except (TypeError, ValueError):
        return False
    return DataPlane.ARROW_BATCHES in spec.native_planes
