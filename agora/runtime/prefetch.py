"""Source prefetch: a bounded read-ahead of a source that declares ``supports_prefetch``,
each emission queued with the source position and ack callback taken when it was read."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

from agora.errors import PipelineError
from agora.sources.base import BaseSource

__all__ = ["DEFAULT_PREFETCH_LIMIT", "PrefetchFigures", "SourcePrefetch", "prefetch_limit_of"]

#: How many emissions a prefetching source may be read ahead when it names no
#: ``prefetch_limit``. Each queued emission is memory held outside ``max_buffer_size``'s
#: count until it is pulled, so the default stays small: enough to hide one slow read
#: behind the work on the previous emission.
DEFAULT_PREFETCH_LIMIT: Final = 2


@dataclass(frozen=True)
class PrefetchFigures:
    """What the read-ahead did: whether it ran, its bound, the most emissions it held at
    once and how many times the reader waited because that bound was reached."""

    enabled: bool = False
    limit: int = 0
    max_depth: int = 0
    block_count: int = 0


def prefetch_limit_of(source: BaseSource) -> int | None:
    """The read-ahead bound of ``source`` (looking through the ``max_records`` wrapper):
    None when it does not declare ``supports_prefetch = True``. Raises ``PipelineError``
    naming the source when ``prefetch_limit`` is not a whole number >= 1."""
    declaring = getattr(source, "inner", source)  # LimitedSource wraps the user's source
    if getattr(declaring, "supports_prefetch", False) is not True:
        return None
    limit = getattr(declaring, "prefetch_limit", DEFAULT_PREFETCH_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise PipelineError(
            f"source {source.source_name!r}: prefetch_limit must be an int >= 1; got "
            f"{limit!r} — set it to how many emissions may be read ahead (e.g. 2), or set "
            f"supports_prefetch = False", stage="pipeline_build")
    return limit


class _Read:
    __slots__ = ("item", "position", "ack", "size")

    def __init__(self, item: Any, position: Any, ack: Any, size: int) -> None:
        self.item, self.position, self.ack, self.size = item, position, ack, size


class _Failed:
    __slots__ = ("error", "position")

    def __init__(self, error: BaseException, position: Any) -> None:
        self.error, self.position = error, position


_END: Final[Any] = object()


class SourcePrefetch:
    """An async iterator over ``stream`` that a background task reads ahead of.

    Contract:
    * Order: emissions come out exactly as the source yielded them, each once.
    * Bounded: at most ``limit`` emissions are read and not yet taken — the reader waits
      for a free place *before* it asks the source for the next one, so a consumer that
      stops taking (``max_records``, a stop) leaves at most ``limit`` read in vain. The
      queue also counts against ``max_buffer``: with anything queued, the reader waits
      while the records queued (``size(emission)`` each) plus ``held()`` (those the run
      holds past the queue) reach it — so, as without a read-ahead, the run holds about
      ``max_buffer`` records (one emission more at most).
    * Positions: right after each emission the reader records ``position()`` (the
      source's ``current_checkpoint()``) and ``ack_hook()`` (its per-record ack
      callback); :attr:`position` and :meth:`ack` give those of the emission last taken,
      never of one still queued — so a checkpoint built from them covers only what the
      pipeline has been handed.
    * Errors: an exception from the source is raised by the ``__anext__`` that would have
      returned the next emission, after every earlier one; :attr:`position` is then the
      position captured at the failure. It is never turned into a clean end.
    * ``aclose()`` stops the reader task, waits for it and closes the source's stream;
      idempotent. The source object itself is closed by the run's lifecycle, not here.
    """

    def __init__(self, stream: AsyncIterator[Any], *, limit: int,
                 position: Callable[[], Any],
                 ack_hook: Callable[[], Any] | None = None,
                 size: Callable[[Any], int] = lambda item: 1,
                 max_buffer: int | None = None, held: Callable[[], int] = lambda: 0) -> None:
        self._stream = stream
        self._limit = limit
        self._size = size
        self._max_buffer = max_buffer
        self._held = held
        self._queued_records = 0
        self._position_of = position
        self._ack_hook = ack_hook
        self._queue: collections.deque[Any] = collections.deque()
        self._ready = asyncio.Event()  # set when an entry is queued
        self._room = asyncio.Event()  # set when an entry is taken
        self._task: asyncio.Task[None] | None = None
        self._done = False  # the end or the failure was handed out
        self._closed = False
        self.position: Any = None
        self._ack: Any = None
        self.max_depth = 0
        self.block_count = 0

    def figures(self) -> PrefetchFigures:
        return PrefetchFigures(enabled=True, limit=self._limit, max_depth=self.max_depth,
                               block_count=self.block_count)

    def ack(self) -> Any:
        """The ack callback captured with the emission last taken (None if none)."""
        return self._ack

    def __aiter__(self) -> SourcePrefetch:
        return self

    async def __anext__(self) -> Any:
        if self._done or self._closed:
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.create_task(self._read_ahead(), name="agora-source-prefetch")
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        entry = self._queue.popleft()
        if isinstance(entry, _Read):
            self._queued_records -= entry.size
            self._room.set()
            self.position, self._ack = entry.position, entry.ack
            return entry.item
        self._done = True
        if isinstance(entry, _Failed):
            self.position, self._ack = entry.position, None
            raise entry.error
        raise StopAsyncIteration

    def _put(self, entry: Any) -> None:
        self._queue.append(entry)
        self._ready.set()

    async def _read_ahead(self) -> None:
        stream = self._stream
        while True:
            if not self._has_room():
                self.block_count += 1  # the consumer is behind: wait until it takes one
                while not self._has_room():
                    self._room.clear()
                    await self._room.wait()
            try:
                item = await stream.__anext__()
            except StopAsyncIteration:
                self._put(_END)
                return
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # handed to the consumer, in its turn
                self._put(_Failed(exc, self._safe_position()))
                return
            try:
                entry = _Read(item, self._position_of(),
                              None if self._ack_hook is None else self._ack_hook(),
                              self._size(item))
            except Exception as exc:  # a broken current_checkpoint() fails the run, in order
                self._put(_Failed(exc, None))
                return
            self._queued_records += entry.size
            self._put(entry)
            self.max_depth = max(self.max_depth, len(self._queue))

    def _has_room(self) -> bool:
        if not self._queue:  # an empty queue never waits: the consumer may be waiting on it
            return True
        if len(self._queue) >= self._limit:
            return False
        return (self._max_buffer is None
                or self._queued_records + self._held() < self._max_buffer)

    def _safe_position(self) -> Any:
        try:
            return self._position_of()
        except Exception:  # the position only locates the failure for the DLQ record
            return None

    async def aclose(self) -> None:
        """Stop reading ahead and close the source's stream (see the class contract)."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._queue.clear()
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()
