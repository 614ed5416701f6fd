"""Ready-made middleware wrapping a user function: Map/Filter per record, per record of a
Python batch, and per Arrow batch; Apply for a function of the whole Python batch."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from agora.middleware.base import (
    ArrowBatchMiddleware,
    BatchMiddleware,
    Middleware,
    MiddlewareContext,
)

__all__ = [
    "ArrowFilterMiddleware",
    "ArrowMapMiddleware",
    "BatchApplyMiddleware",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "FilterMiddleware",
    "MapMiddleware",
]


def _check_callable(kind: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{kind} needs a callable; got {type(fn).__name__}")


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


class MapMiddleware(Middleware):
    """``fn(record) -> record | None`` per record (None drops it)."""

    def __init__(self, fn: Callable[[Any], Any], name: str | None = None) -> None:
        _check_callable("MapMiddleware", fn)
        self.fn = fn
        self.name = name or f"map:{_fn_name(fn)}"

    def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        return self.fn(record)


class FilterMiddleware(Middleware):
    """Keeps records for which ``predicate(record)`` is truthy; drops the rest."""

    def __init__(self, predicate: Callable[[Any], Any], name: str | None = None) -> None:
        _check_callable("FilterMiddleware", predicate)
        self.predicate = predicate
        self.name = name or f"filter:{_fn_name(predicate)}"

    def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        return record if self.predicate(record) else None


class BatchMapMiddleware(BatchMiddleware):
    """``fn(record) -> record | None`` applied to each record of a batch (None drops it).

    The per-record map of the batch lane: same meaning as :class:`MapMiddleware`, one call
    per batch instead of per record. ``fn`` may be a coroutine function; the records of a
    batch are then awaited concurrently, results kept in input order. After an Arrow source
    ``fn`` receives each row as a dict. Because the batch is one unit, ``fn`` raising for
    any record fails the whole batch: every record of it is dead-lettered with
    ``stage="batch_middleware"`` (or the run fails, per the failure policy). Use
    :class:`MapMiddleware` to isolate failures record by record, and
    :class:`BatchApplyMiddleware` to hand ``fn`` the whole list.
    """

    def __init__(self, fn: Callable[[Any], Any], name: str | None = None) -> None:
        _check_callable("BatchMapMiddleware", fn)
        self.fn = fn
        self.name = name or f"batch_map:{_fn_name(fn)}"
        self._fn_is_async = inspect.iscoroutinefunction(fn)

    def process_batch(self, records: Sequence[Any], ctx: MiddlewareContext) -> Any:
        if self._fn_is_async:
            return self._gather(records)
        fn = self.fn
        return [fn(r) for r in records]

    async def _gather(self, records: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.fn(r) for r in records)))


class BatchApplyMiddleware(BatchMiddleware):
    """``fn(records) -> list`` once per batch: one result per input, in order (None drops
    that record; a list of another length fails the run as a contract error naming the
    middleware). Raising fails the whole batch. On a row lane ``fn`` gets one-record
    lists."""

    def __init__(self, fn: Callable[[Sequence[Any]], Sequence[Any]], name: str | None = None):
        _check_callable("BatchApplyMiddleware", fn)
        self.fn = fn
        self.name = name or f"batch_apply:{_fn_name(fn)}"

    def process_batch(self, records: Sequence[Any], ctx: MiddlewareContext) -> Any:
        return self.fn(records)


class BatchFilterMiddleware(BatchMiddleware):
    """Applies ``predicate(record)`` to every record of a batch; falsy → dropped."""

    def __init__(self, predicate: Callable[[Any], Any], name: str | None = None) -> None:
        _check_callable("BatchFilterMiddleware", predicate)
        self.predicate = predicate
        self.name = name or f"batch_filter:{_fn_name(predicate)}"

    def process_batch(self, records: Sequence[Any], ctx: MiddlewareContext) -> Any:
        pred = self.predicate
        return [r if pred(r) else None for r in records]


class ArrowMapMiddleware(ArrowBatchMiddleware):
    """``fn(RecordBatch) -> RecordBatch`` per Arrow batch (it may also filter rows)."""

    def __init__(self, fn: Callable[[Any], Any], name: str | None = None) -> None:
        _check_callable("ArrowMapMiddleware", fn)
        self.fn = fn
        self.name = name or f"arrow_map:{_fn_name(fn)}"

    def process_arrow_batch(self, batch: Any, ctx: MiddlewareContext) -> Any:
        return self.fn(batch)


class ArrowFilterMiddleware(ArrowBatchMiddleware):
    """Keeps the rows where ``predicate(RecordBatch)`` is true.

    The predicate returns a boolean mask (array-like, one entry per row) or a
    ``pyarrow.compute.Expression``; null mask entries drop the row. It implements the
    :class:`~agora.middleware.base.ArrowRowFilter` hook, like any filter of yours can.
    """

    def __init__(self, predicate: Callable[[Any], Any], name: str | None = None) -> None:
        _check_callable("ArrowFilterMiddleware", predicate)
        self.predicate = predicate
        self.name = name or f"arrow_filter:{_fn_name(predicate)}"

    def arrow_filter_mask(self, batch: Any, ctx: MiddlewareContext) -> Any:
        return self.predicate(batch)

    def process_arrow_batch(self, batch: Any, ctx: MiddlewareContext) -> Any:
        return batch.filter(self.arrow_filter_mask(batch, ctx))
