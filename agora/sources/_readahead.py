"""``ReadAhead``: a bounded, ordered prefetch of a blocking read function in one thread."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["END", "ReadAhead"]

T = TypeVar("T")

#: Returned by a read function when the input has no more items.
END: Any = object()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """Calls ``read()`` repeatedly in a background thread, at most ``depth`` results ahead
    of the consumer, and hands them out in call order through ``await next()``.

    Contract:
    * Order: results come out exactly in the order ``read()`` produced them.
    * Errors: an exception raised by ``read()`` is re-raised by the ``next()`` call that
      would have returned that result — after every earlier result — and the thread stops
      reading. ``END`` is returned once ``read()`` returns it; later calls return ``END``.
    * Bounded: at most ``depth`` results wait in memory, plus the one being read.
    * ``close()`` stops the thread and waits for it (a ``read()`` already running is let
      finish: pyarrow cannot be interrupted mid-block); the caller may then release what
      ``read()`` uses. ``close()`` is idempotent and safe before the thread started.
    * ``read()`` runs only in the thread, so any state it alone mutates needs no lock; the
      consumer must take what it needs from the returned value, not from shared fields.
    """

    def __init__(self, read: Callable[[], T], *, depth: int = 2, name: str = "agora-readahead") -> None:
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"read-ahead depth must be an int >= 1; got {depth!r}")
        self._read = read
        self._depth = depth
        self._name = name
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The reading thread, once started (for tests and diagnostics)."""
        return self._thread

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Daemon: a thread stuck in a blocking read must never keep the interpreter alive;
        # close() still joins it on every normal path.
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while len(self._items) >= self._depth and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
            try:
                item: Any = self._read()
            except BaseException as exc:  # handed to the consumer, never lost in the thread
                item = _Raised(exc)
            last = item is END or isinstance(item, _Raised)
            with self._cond:
                self._items.append(item)
                waiter, self._waiter = self._waiter, None
            if waiter is not None and self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(_wake, waiter)
                except RuntimeError:
                    return  # the loop closed: nobody is waiting any more
            if last:
                return

    async def next(self) -> T:
        """The next result in order; ``END`` at the end; re-raises a read error."""
        if self._stopped:
            raise RuntimeError("read-ahead used after close()")
        if self._thread is None:
            self._start()
        while True:
            with self._cond:
                if self._items:
                    item = self._items[0]
                    if item is not END:  # END and errors stay: every later call sees them
                        self._items.popleft()
                        self._cond.notify()
                    break
                assert self._loop is not None
                waiter = self._loop.create_future()
                self._waiter = waiter
            await waiter
        if isinstance(item, _Raised):
            self._items.clear()
            self._items.append(END)
            raise item.error
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop reading ahead and wait for the thread to end."""
        with self._cond:
            self._stopped = True
            self._items.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # cancelled by the consumer's own cancellation
        waiter.set_result(None)
