"""Pacing the pump: how many units it may hold ahead of the commit, and how long a
partial row group may wait for a slow source before it is handed on."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from agora.runtime.units import Unit

__all__ = ["TIMED_OUT", "AckCallback", "Admission", "Puller"]


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


#: ``Puller.next`` found nothing before its deadline (the pull itself goes on).
TIMED_OUT: Final[Any] = _TimedOut()

Commit = Callable[[Unit], Awaitable[None]]


class Admission:
    """How far the pump may run ahead of the commit: the engine's window.

    ``run`` units may be in their overlapped stages at once; ``hold`` units may be held
    uncommitted, running or finished. Process lanes hold what they run (``eager`` off:
    the pump commits the head once ``run`` units are held). An I/O lane holds more than
    it runs (``eager`` on): a finished unit gives its place to the next one at once,
    even while an earlier, slower unit keeps the commit waiting, and finished heads are
    committed one per refill — so the lane's calls never wait for the commit.
    """

    __slots__ = ("run", "hold", "eager", "running", "_wake")

    def __init__(self, *, run: int, hold: int, eager: bool) -> None:
        self.run = run
        self.hold = max(hold, run)
        self.eager = eager
        self.running = 0
        self._wake: asyncio.Future[None] | None = None

    def track(self, task: asyncio.Task[None]) -> None:
        """Count ``task`` (a unit's overlapped stages) until it finishes."""
        self.running += 1
        task.add_done_callback(self._finished)

    async def make_room(self, pending: collections.deque[Unit], commit: Commit,
                        over_buffer: Callable[[], bool]) -> None:
        """Commit from the head of ``pending`` (in source order) until the pump may read
        the next unit: fewer than ``hold`` units held, ``over_buffer()`` false, and — on
        an I/O lane — a free place to run it."""
        committed = False
        while pending:
            task = pending[0].task
            done = task is None or task.done()
            if len(pending) >= self.hold or over_buffer():
                await commit(pending.popleft())
            elif not self.eager:
                return
            elif self.running < self.run and (committed or not done):
                return  # refill first: at most one finished head per refill
            elif done:
                committed = True
                await asyncio.sleep(0)  # the unit just dispatched starts before this commit
                await commit(pending.popleft())
            else:
                await self._finished_one()

    @staticmethod
    async def commit_finished(pending: collections.deque[Unit], commit: Commit) -> None:
        """Commit every unit at the head of ``pending`` that has nothing left in flight."""
        while pending and (pending[0].task is None or pending[0].task.done()):
            await commit(pending.popleft())

    async def _finished_one(self) -> None:
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self.running -= 1
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


AckCallback = Callable[[], Awaitable[None]]


class Puller:
    """Pulls the source's next item, optionally giving up *waiting* after a timeout.

    Only the wait is given up: the pull stays pending (cancelling it would close the
    source's generator) and the next call picks it up, so no item is lost or read twice.
    With ``hook`` (a source's ``delivery_success_callback``, the upstream spelling of a
    per-record ack), the callback it returns right after each item is kept in pull order
    until :meth:`take` hands it to the unit the item went into.
    """

    def __init__(self, agen: AsyncIterator[Any],
                 hook: Callable[[], AckCallback | None] | None = None) -> None:
        self._agen = agen
        self._next: asyncio.Future[Any] | None = None
        self._hook = hook
        self._callbacks: collections.deque[AckCallback | None] = collections.deque()

    @property
    def hooked(self) -> bool:
        """True when the source hands out per-record ack callbacks."""
        return self._hook is not None

    def take(self, n: int) -> list[AckCallback | None]:
        """The ack callbacks of the next ``n`` items pulled, oldest first, one per item
        (None where the source returned none), so they line up with the items."""
        if self._hook is None:
            return []
        return [self._callbacks.popleft() for _ in range(min(n, len(self._callbacks)))]

    async def next(self, timeout: float | None = None) -> Any:
        """The next item, or ``TIMED_OUT``; raises ``StopAsyncIteration`` at the end."""
        if self._next is None:
            if timeout is None:
                return self._pulled(await self._agen.__anext__())
            self._next = asyncio.ensure_future(self._agen.__anext__())
        if timeout is not None:
            done, _ = await asyncio.wait({self._next}, timeout=max(timeout, 0.0))
            if not done:
                return TIMED_OUT
        pull, self._next = self._next, None
        return self._pulled(await pull)

    def _pulled(self, item: Any) -> Any:
        if self._hook is not None:  # asked at once: the hook speaks of the current record
            self._callbacks.append(self._hook())
        return item

    async def cancel(self) -> None:
        """Stop a pull still pending (before the source's generator is closed)."""
        pull, self._next = self._next, None
        if pull is not None and not pull.done():
            pull.cancel()
            await asyncio.gather(pull, return_exceptions=True)
