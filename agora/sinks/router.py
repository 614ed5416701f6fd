"""``SinkRouter``: send each record to the first sink whose predicate matches."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agora.sinks.base import BaseSink, as_sink

__all__ = ["SinkRouter"]

if TYPE_CHECKING:
    from typing_extensions import TypeVar as _DefaultedTypeVar

    RecordT = _DefaultedTypeVar("RecordT", default=Any)
else:
    RecordT = TypeVar("RecordT")


class SinkRouter(Generic[RecordT]):
    """``SinkRouter().route(pred, sink_a).route(pred2, sink_b).default(sink_c)``.

    First matching predicate wins. A record that matches nothing and has no default is
    *unrouted*: counted as a drop, not an error. A predicate that raises is a sink-stage
    failure of that record (DLQ / failure policy). A router always receives rows.
    Targets are :class:`BaseSink` instances or objects with async ``open`` / ``write`` /
    ``close`` (adapted the way ``Pipeline.build()`` adapts them); ``SinkRouter[int]()``
    types the records.
    """

    def __init__(self) -> None:
        self.routes: list[tuple[Callable[[Any], Any], BaseSink[Any]]] = []
        self.default_sink: BaseSink[Any] | None = None
        # The objects as given, for bind_context (an adapter does not forward it).
        self._given: list[tuple[BaseSink[Any], Any]] = []

    def route(self, predicate: Callable[[RecordT], Any], sink: Any) -> SinkRouter[RecordT]:
        if not callable(predicate):
            raise TypeError(
                f"SinkRouter.route needs a callable predicate; got {type(predicate).__name__}"
                f" — pass a function of the record")
        self.routes.append((predicate, self._adopt(sink, "SinkRouter.route()")))
        return self

    def default(self, sink: Any) -> SinkRouter[RecordT]:
        self.default_sink = self._adopt(sink, "SinkRouter.default()")
        return self

    def _adopt(self, obj: Any, where: str) -> BaseSink[Any]:
        """One adapter per object: a sink named in several routes stays one sink."""
        for adapted, given in self._given:
            if given is obj:
                return adapted
        adapted = as_sink(obj, where=where)
        self._given.append((adapted, obj))
        return adapted

    @property
    def sinks(self) -> list[BaseSink[Any]]:
        """Distinct sinks in declaration order (default last)."""
        out: list[BaseSink[Any]] = []
        for _, sink in self.routes:
            if not any(sink is s for s in out):
                out.append(sink)
        if self.default_sink is not None and not any(self.default_sink is s for s in out):
            out.append(self.default_sink)
        return out

    def bind_context(self, ctx: Any) -> None:
        """Hand ``ctx`` to each distinct target (routes in order, then the default) that
        has a ``bind_context`` method; the others are left alone."""
        given = {id(adapted): obj for adapted, obj in self._given}
        for sink in self.sinks:
            bind = getattr(given.get(id(sink), sink), "bind_context", None)
            if callable(bind):
                bind(ctx)

    def select(self, record: Any) -> BaseSink[Any] | None:
        for predicate, sink in self.routes:
            if predicate(record):
                return sink
        return self.default_sink
