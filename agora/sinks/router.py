"""``SinkRouter``: send each record to the first sink whose predicate matches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agora.sinks.base import BaseSink

__all__ = ["SinkRouter"]


class SinkRouter:
    """``SinkRouter().route(pred, sink_a).route(pred2, sink_b).default(sink_c)``.

    First matching predicate wins. A record that matches nothing and has no default is
    *unrouted*: counted as a drop, not an error. A predicate that raises is a sink-stage
    failure of that record (DLQ / failure policy). A router always receives rows.
    """

    def __init__(self) -> None:
        self.routes: list[tuple[Callable[[Any], Any], BaseSink]] = []
        self.default_sink: BaseSink | None = None

    def route(self, predicate: Callable[[Any], Any], sink: BaseSink) -> SinkRouter:
        if not callable(predicate):
            raise TypeError(f"SinkRouter.route needs a callable predicate; got {type(predicate).__name__}")
        _check_sink(sink)
        self.routes.append((predicate, sink))
        return self

    def default(self, sink: BaseSink) -> SinkRouter:
        _check_sink(sink)
        self.default_sink = sink
        return self

    @property
    def sinks(self) -> list[BaseSink]:
        """Distinct sinks in declaration order (default last)."""
        out: list[BaseSink] = []
        for _, sink in self.routes:
            if not any(sink is s for s in out):
                out.append(sink)
        if self.default_sink is not None and not any(self.default_sink is s for s in out):
            out.append(self.default_sink)
        return out

    def select(self, record: Any) -> BaseSink | None:
        for predicate, sink in self.routes:
            if predicate(record):
                return sink
        return self.default_sink


def _check_sink(sink: Any) -> None:
    if not isinstance(sink, BaseSink):
        raise TypeError(f"SinkRouter targets must be BaseSink instances; got {type(sink).__name__}")
