"""Writers over several sinks: ``SinkFanOut`` (every sink gets every record)."""

from __future__ import annotations

from collections.abc import Iterable

from agora.sinks.base import BaseSink

__all__ = ["SinkFanOut"]


class SinkFanOut:
    """Every sink receives every record; a record counts as written if at least one sink
    wrote it. Each sink's failure is handled per record (DLQ / failure policy). On an
    Arrow chain each sink gets its own selected plane.

    ``sink_concurrency`` (default 1: one sink after another) is how many sinks of the
    fan-out are written at once for each batch. The built-in file sinks (and any sink whose
    ``writes_in_thread`` attribute is true) are then written in worker threads — their
    encoding and I/O release the GIL, so they overlap for real; any other sink's write
    coroutine runs concurrently on the event loop. Results stay per sink and per record,
    the failure policies are unchanged, and a sink is never written by two threads at once
    nor flushed while a write of it is running."""

    def __init__(self, sinks: Iterable[BaseSink], *, sink_concurrency: int = 1) -> None:
        if (not isinstance(sink_concurrency, int) or isinstance(sink_concurrency, bool)
                or sink_concurrency < 1):
            raise ValueError(
                f"SinkFanOut sink_concurrency must be an int >= 1 (sinks written at once); "
                f"got {sink_concurrency!r} — use 1 to write the sinks one after another"
            )
        self.sink_concurrency = sink_concurrency
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
