"""How a run learns it must stop: SIGINT/SIGTERM handlers, task cancellation and the
stop flag the engine checks between source emissions and between records.

A signal handler runs on the main thread between two bytecodes, even while synchronous
middleware keeps the event loop busy; so the first signal only sets a plain flag (read by
the pump before each pull and by row stages before each record) and wakes the loop for
runs that are waiting on worker processes. Nothing else happens inside the handler.

* first signal — stop pulling from the source; in-flight units get ``DRAIN_S`` to be
  committed, then are abandoned; the handled prefix is checkpointed; shutdown runs.
* second signal — abandon every in-flight unit now; shutdown still runs (workers
  terminated, files flushed and closed).
* third signal — Python's default: ``KeyboardInterrupt`` (SIGINT) or termination
  (SIGTERM) wherever the program is. The checkpoint is still only ever saved over
  handled units, so even this loses nothing; it may re-deliver the unsaved tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["DRAIN_S", "StopFlag", "handle_signals"]

#: How long in-flight units may take to commit after the first signal. Long enough for
#: a few process batches already in the workers to come back (so their work is kept),
#: short enough that a stop is felt as prompt; past it they are abandoned and re-read
#: on resume.
DRAIN_S = 5.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """The stop request of one run. ``requested`` and ``forced`` only ever go from False
    to True; ``reason`` names what asked (``SIGINT``, ``SIGTERM``, ``cancelled``)."""

    __slots__ = ("requested", "forced", "reason", "deadline", "drain_s", "_loop", "_listeners")

    def __init__(self, drain_s: float = DRAIN_S) -> None:
        self.requested = False
        self.forced = False
        self.reason: str | None = None
        self.drain_s = drain_s
        #: ``time.monotonic()`` after which in-flight work is abandoned (set on request).
        self.deadline = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[], None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listeners run on ``loop`` (the run's loop), whatever thread asked to stop."""
        self._loop = loop

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the run's loop after every request (first and forced)."""
        self._listeners.append(listener)

    def request(self, reason: str, *, force: bool = False) -> None:
        """Ask the run to stop; safe to call from a signal handler or another thread."""
        if not self.requested:
            self.reason = reason
            self.deadline = time.monotonic() + self.drain_s
        self.requested = True
        if force:
            self.forced = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # Wakes a loop blocked in select() (waiting on workers) so it sees the flag now.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._notify)

    def should_abandon(self) -> bool:
        """True once in-flight work must be given up: forced, or past the drain time."""
        return self.forced or (self.requested and time.monotonic() >= self.deadline)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


def _is_replaceable_sigint(handler: Any) -> bool:
    """Python's default SIGINT handler, or the one ``asyncio.run`` installs: both only
    turn the signal into an exception, which a run would rather handle itself."""
    if handler is signal.default_int_handler:
        return True
    func = handler.func if isinstance(handler, functools.partial) else None
    return getattr(func, "__name__", "") == "_on_sigint"


@contextlib.contextmanager
def handle_signals(stop: StopFlag) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM request a stop on ``stop`` (second: a
    forced stop; third: the default action). Only on the main thread, and only for
    signals whose handler is still a default one — a handler the program installed
    itself is left alone. Previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    count = {"n": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        count["n"] += 1
        name = signal.Signals(signum).name
        if count["n"] == 1:
            stop.request(name)
            return
        stop.request(name, force=True)
        # From now on the signals do what they do by default (see the module docstring).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        ours = (_is_replaceable_sigint(current) if signum == signal.SIGINT
                else current in (signal.SIG_DFL, None))
        if ours:
            previous[signum] = current
            signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
