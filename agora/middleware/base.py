"""Middleware contracts: per-record, per-batch (Python lists) and per-batch (Arrow).

``process`` / ``process_batch`` / ``process_arrow_batch`` may be plain functions or
coroutines; the runtime awaits what they return when it is awaitable. ``on_start`` and
``on_stop`` hooks run in chain order / reverse chain order and may also be either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agora.planes import DataPlane

__all__ = [
    "ArrowBatchMiddleware",
    "BatchMiddleware",
    "Middleware",
    "MiddlewareContext",
    "MiddlewareKind",
]


@dataclass
class MiddlewareContext:
    """Passed to every middleware call. ``metrics`` is this middleware's counter dict
    (it appears under ``by_middleware[name]`` in the run summary)."""

    pipeline_id: str
    run_id: str
    middleware_name: str
    middleware_index: int
    metrics: dict[str, Any] = field(default_factory=dict)


class MiddlewareKind:
    ROW = "row"
    BATCH = "batch"
    ARROW = "arrow"


class _MiddlewareBase:
    """Shared naming and hooks. ``name`` defaults to the class name."""

    name: str = ""
    kind: ClassVar[str]
    #: The plane this middleware consumes and produces.
    plane: ClassVar[DataPlane]
    #: True for middleware whose work runs in worker processes (batch-only).
    process_isolated: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "name", ""):
            cls.name = cls.__name__

    def on_start(self, ctx: MiddlewareContext) -> Any:
        """Called once before the source opens (in chain order)."""

    def on_stop(self, ctx: MiddlewareContext) -> Any:
        """Called once after the source closes (in reverse chain order), also on failure."""


class Middleware(_MiddlewareBase):
    """Per-record transform: ``process(record, ctx)`` returns the new record, or None to
    drop it. Raising is an *error* (DLQ / failure policy), never a silent drop. Works on
    every lane; inside a batch lane it is applied record by record."""

    kind = MiddlewareKind.ROW
    plane = DataPlane.PYTHON_ROWS

    def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        raise NotImplementedError(f"middleware {self.name!r} does not implement process()")


class BatchMiddleware(_MiddlewareBase):
    """Per-batch transform over Python records: ``process_batch(records, ctx)`` returns
    one result per input, in order (None = drop that record). Raising fails the whole
    batch. On a row lane it is fed one-record batches."""

    kind = MiddlewareKind.BATCH
    plane = DataPlane.PYTHON_BATCHES

    def process_batch(self, records: Sequence[Any], ctx: MiddlewareContext) -> Any:
        raise NotImplementedError(f"middleware {self.name!r} does not implement process_batch()")


class ArrowBatchMiddleware(_MiddlewareBase):
    """Per-batch transform over Arrow: ``process_arrow_batch(batch, ctx)`` returns a
    ``RecordBatch`` (it may filter rows). Only valid after an Arrow source."""

    kind = MiddlewareKind.ARROW
    plane = DataPlane.ARROW_BATCHES

    def process_arrow_batch(self, batch: Any, ctx: MiddlewareContext) -> Any:
        raise NotImplementedError(
            f"middleware {self.name!r} does not implement process_arrow_batch()"
        )
