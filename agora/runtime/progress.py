"""The live counters a run hands to its progress callback (the CLI's progress line)."""

from __future__ import annotations

import time

__all__ = ["PROGRESS_INTERVAL_S", "Progress"]

#: How often the progress callback fires. A display refresh, not a tunable of the run.
PROGRESS_INTERVAL_S = 0.5


class Progress:
    """Live counters handed to a progress callback (the CLI's display)."""

    __slots__ = ("consumed", "written", "dropped", "errored", "started", "done")

    def __init__(self) -> None:
        self.consumed = self.written = self.dropped = self.errored = 0
        self.started = time.perf_counter()
        self.done = False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
