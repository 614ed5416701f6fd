"""Middleware contracts: per-record, per-batch (Python lists) and per-batch (Arrow).

``process`` / ``process_batch`` / ``process_arrow_batch`` may be plain functions or
coroutines; the runtime awaits what they return when it is awaitable. ``on_start`` and
``on_stop`` hooks run in chain order / reverse chain order and may also be either.

An Arrow middleware that only keeps or removes rows may also implement the
:class:`ArrowRowFilter` hook (``arrow_filter_mask``): the runtime then applies the mask
itself and knows which source rows survive, so dead letters of later stages carry the
rows exactly as the source emitted them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

from agora.planes import DataPlane

if TYPE_CHECKING:
    # Defaults let un-parameterised uses mean "any record" under mypy --strict (as for
    # BaseSource / BaseSink); the runtime TypeVars need none.
    from typing_extensions import TypeVar as _DefaultedTypeVar

    InT = _DefaultedTypeVar("InT", default=Any)
    OutT = _DefaultedTypeVar("OutT", default=Any)
else:
    InT = TypeVar("InT")
    OutT = TypeVar("OutT")

__all__ = [
    "AnyMiddleware",
    "ArrowBatchMiddleware",
    "ArrowRowFilter",
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


class MiddlewareKind(StrEnum):
    """What a middleware consumes: one record, a list of records, or an Arrow batch."""

    ROW = "row"
    BATCH = "batch"
    ARROW = "arrow"


class _MiddlewareBase:
    """Shared naming and hooks. ``name`` defaults to the class name."""

    name: str = ""
    kind: ClassVar[MiddlewareKind]
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


class Middleware(_MiddlewareBase, Generic[InT, OutT]):
    """Per-record transform: ``process(record, ctx)`` returns the new record, or None to
    drop it. Raising is an *error* (DLQ / failure policy), never a silent drop. Works on
    every lane; inside a batch lane it is applied record by record. ``Middleware[In, Out]``
    names the record types for the type checker only."""

    kind = MiddlewareKind.ROW
    plane = DataPlane.PYTHON_ROWS

    def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        raise NotImplementedError(f"middleware {self.name!r} does not implement process()")


class BatchMiddleware(_MiddlewareBase, Generic[InT, OutT]):
    """Per-batch transform over Python records: ``process_batch(records, ctx)`` returns
    one result per input, in order (None = drop that record). Raising fails the whole
    batch. On a row lane it is fed one-record batches. ``BatchMiddleware[In, Out]`` names
    the record types for the type checker only."""

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


#: Any middleware ``Pipeline.pipe`` accepts.
AnyMiddleware: TypeAlias = Middleware | BatchMiddleware | ArrowBatchMiddleware


@runtime_checkable
class ArrowRowFilter(Protocol):
    """The Arrow filter hook: an ``ArrowBatchMiddleware`` that only keeps or removes
    rows implements ``arrow_filter_mask(batch, ctx)`` and returns which rows to keep —
    a boolean array-like with one entry per row (null drops the row) or a
    ``pyarrow.compute.Expression``.

    When a middleware has this method the runtime calls it *instead of*
    ``process_arrow_batch`` and filters the batch itself. Because it then knows which
    source rows survive, a record that fails later (in another middleware or a sink) is
    dead-lettered with the row as the source emitted it, not as it looked when it
    failed. ``ArrowFilterMiddleware`` implements it; so can any middleware of yours.
    """

    def arrow_filter_mask(self, batch: Any, ctx: MiddlewareContext, /) -> Any: ...
