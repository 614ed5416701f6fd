"""Writers over several sinks: ``SinkFanOut`` (every sink gets every record)."""

from __future__ import annotations

from collections.abc import Iterable

from agora.sinks.base import BaseSink

__all__ = ["SinkFanOut"]


class SinkFanOut:
    """Every sink receives every record; a record counts as written if at least one sink
    wrote it. Each sink's failure is handled per record (DLQ / failure policy). On an
    Arrow chain each sink gets its own selected plane (contract §2)."""

    def __init__(self, sinks: Iterable[BaseSink]) -> None:
        self.sinks = list(sinks)
        if not self.sinks:
            raise ValueError("SinkFanOut needs at least one sink")
        for sink in self.sinks:
            if not isinstance(sink, BaseSink):
                raise TypeError(
                    f"SinkFanOut members must be BaseSink instances; got {type(sink).__name__}"
                )
        names = [s.sink_name for s in self.sinks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"SinkFanOut has several sinks named {dupes}; give each a distinct name= so "
                f"DLQ records and metrics can tell them apart"
            )
