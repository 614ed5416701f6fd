"""The committer: handle units strictly in source order, hand their failures to the
failure routing (``runtime/failure_routing.py``: DLQ, policies), and advance the
checkpoint only over the contiguous prefix of handled units — after the sink and DLQ
writes it covers have been flushed.

A checkpoint save has two steps. The *flush* (every sink, then or alongside the DLQ)
runs on the event loop and finishes before anything else is committed. The *store
write* of the position that flush covers runs on a worker thread when the store allows
it (``saves_in_thread``), while the pipeline reads, transforms and writes the next
unit: that unit is not covered by the save in flight, so nothing that is not durable is
ever named by it.
At most one store write is in flight and it is waited for at the next unit's commit
point, so saves reach the store in source order and its outcome (a failure goes to
``checkpoint_failure_policy`` as an inline one would) is never left untaken. Acks to
the source follow the save they belong to.

Per-record ack callbacks run only for records written or dead-lettered: one that failed
and that no DLQ captured is never acked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agora.config import CheckpointFailurePolicy, DeliveryConfig
from agora.errors import CheckpointError
from agora.records import Checkpoint
from agora.runtime.failure_routing import FailureRouter, RunStop, value_free_detail
from agora.runtime.units import Failure, Unit
from agora.sinks.base import BaseSink

# RunStop is the engine's to catch: it is imported from here, the committer's module.
__all__ = ["CHECKPOINT_THREAD_PREFIX", "Committer", "RunStop"]

log = logging.getLogger("agora.delivery")

AckCallback = Callable[[], Awaitable[None]]


def _acks_of_delivered(unit: Unit, uncaptured: list[Failure]) -> list[AckCallback]:
    """The unit's per-record ack callbacks, less those of records that failed and were
    captured by no DLQ (the run went on past them under ``log_and_continue``): such a
    record was neither delivered nor kept, so the source must not be told it was. A
    failed record is found among the unit's source rows by identity; when one cannot be
    (a batch unit, an Arrow row, a marker), no callback of the unit runs — an ack
    withheld can only make an upstream deliver again, one sent wrongly loses a record."""
    acks = unit.acks
    if uncaptured:
        rows = unit.source_rows
        if rows is None or len(rows) != len(acks):
            return []
        failed = {id(f.record) for f in uncaptured}
        if not failed <= {id(row) for row in rows}:
            return []
        acks = [cb for cb, row in zip(acks, rows, strict=True) if id(row) not in failed]
    return [cb for cb in acks if cb is not None]


class Committer:
    """Handles units strictly in source order and owns checkpoint saving; a unit's
    failures go to its ``router`` (which also keeps the DLQ and failure counts)."""

    def __init__(
        self,
        *,
        config: DeliveryConfig,
        pipeline_id: str,
        run_id: str,
        source_name: str,
        checkpoint_key: str,
        sinks: Sequence[BaseSink],
        checkpoint_supported: bool,
        flush_concurrency: int = 1,
        ack: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.router = FailureRouter(config=config, pipeline_id=pipeline_id, run_id=run_id,
                                    source_name=source_name)
        self.dlq = config.dlq_sink  # flushed with the sinks before each save
        self.store = config.checkpoint_store
        self.pipeline_id = pipeline_id
        self.run_id = run_id
        self.source_name = source_name
        self.key = checkpoint_key
        self.sinks = sinks
        self.checkpoint_supported = checkpoint_supported
        self.flush_concurrency = flush_concurrency
        # A store that may save on a worker thread (the built-in SQLite store says so);
        # any other is called inline, on the loop, as its contract promises.
        self.saves_in_thread = getattr(self.store, "saves_in_thread", False) is True
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: _SaveInFlight | None = None
        self.ack = ack  # the source's ack hook, called once a save is durable
        self.ack_callbacks: list[Callable[[], Awaitable[None]]] = []  # of handled units
        self.acks = 0
        self.ack_failures = 0
        self.handled_since_save = 0
        self.pending_checkpoint: Any = None
        self.has_pending = False
        self.last_checkpoint: Any = None
        self.checkpoint_saves = 0
        self.checkpoint_failures = 0

    # -- units ------------------------------------------------------------------------
    async def handle(self, unit: Unit) -> None:
        """Handle every failure of ``unit``; raise ``RunStop`` if the run must stop (a
        failure of the unit, or a background save that failed under fail-closed).

        A save still in flight is waited for here, at the next unit's commit point: so a
        save overlaps the writes of one unit at most, and a crash re-delivers no more than
        the inline save would allow (the checkpoint interval plus the unit in flight).
        The unit counts as handled first, so a cancel during that wait still leaves it
        to the run's final save."""
        uncaptured: list[Failure] = []
        if unit.failures:
            uncaptured = await self.router.route(unit, unit.failures)
            unit.failures = []
        self.handled_since_save += unit.n_source
        self.pending_checkpoint = unit.checkpoint
        if unit.acks:  # most sources take no per-record acks
            self.ack_callbacks.extend(_acks_of_delivered(unit, uncaptured))
        self.has_pending = True
        if self._in_flight is not None:
            await self.settle()
        if self.handled_since_save >= self.config.checkpoint_every:
            await self.save()

    async def offer_source_failure(self, error: Exception, *, checkpoint: Any) -> None:
        """The source raised while being read: dead-letter its failure when a DLQ is set
        (see ``FailureRouter.offer_source_failure``); never moves the saved checkpoint."""
        await self.router.offer_source_failure(error, checkpoint=checkpoint)

    # -- checkpoints ------------------------------------------------------------------
    async def flush_outputs(self) -> None:
        """Make every write so far durable: the sinks, then the DLQ — or, when the fan-out
        writes its sinks concurrently, up to ``flush_concurrency`` sinks at once with the
        DLQ alongside (each flush covers only what its own component wrote, so their order
        does not matter; the checkpoint waits for all of them). A flush failure stops the
        run with the first failing component's error, in sink order, DLQ last (the
        checkpoint must not pass records that may not be durable)."""
        if self.flush_concurrency > 1:
            await self._flush_concurrently()
            return
        for sink in self.sinks:
            try:
                await sink.flush()
            except Exception as exc:
                raise RunStop(exc) from exc
        if self.dlq is not None:
            try:
                await self.dlq.flush()
            except Exception as exc:
                raise RunStop(exc) from exc

    async def _flush_concurrently(self) -> None:
        gate = asyncio.Semaphore(self.flush_concurrency)

        async def gated(flush: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await flush()

        coros = [gated(sink.flush) for sink in self.sinks]
        if self.dlq is not None:
            coros.append(self.dlq.flush())
        tasks = [asyncio.ensure_future(c) for c in coros]
        cancelled = False
        while True:
            try:
                await asyncio.wait(tasks)
                break
            except asyncio.CancelledError:
                # A flush fsyncs on a thread that cannot be stopped: let every flush end
                # before the caller may close the files under it.
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        for task in tasks:
            exc = task.exception()
            if isinstance(exc, Exception):
                raise RunStop(exc) from exc
            if exc is not None:
                raise exc

    async def save(self, *, wait: bool = False) -> None:
        """Flush outputs, then durably save the checkpoint of the handled prefix, then ack
        it to the source.

        With a store that ``saves_in_thread``, the store write is started on a worker
        thread after the flush and this returns without waiting for it; ``wait=True``
        (the end of a run) returns only after it ended and its outcome was taken. A save
        in flight always ends before the next one starts. Acks come only after the save
        they follow ended (for a background save: when its outcome is taken), never for a
        prefix whose flush failed or whose save stopped the run. Raises ``RunStop`` if the
        run must stop: a flush failed, or a save (this one or the one before) failed under
        ``checkpoint_failure_policy=fail_closed``."""
        if self.has_pending:
            await self.flush_outputs()
            # Saves stay in order: never two in flight. Should this wait be cancelled,
            # the position stays pending, so the run's final save still covers it.
            await self.settle()
            self.handled_since_save = 0
            self.has_pending = False
            value = self.pending_checkpoint
            calls, self.ack_callbacks = self.ack_callbacks, []
            if self.store is not None and self.checkpoint_supported:
                checkpoint: Checkpoint | None = None
                try:
                    checkpoint = self._checkpoint_of(value)
                except CheckpointError as exc:
                    self._raise_if_fatal(self._outcome(value, exc))
                if checkpoint is not None and self.saves_in_thread:
                    # Acked when the background save's outcome is taken (``settle``).
                    self._start(value, checkpoint, calls)
                    if wait:
                        await self.settle()
                    return
                if checkpoint is not None:
                    try:
                        self.store.save(self.key, checkpoint)
                    except Exception as exc:
                        self._raise_if_fatal(self._outcome(value, exc))
                    else:
                        self._outcome(value, None)
            await self._acknowledge(value, calls)
        if wait:
            await self.settle()

    async def _acknowledge(self, value: Any, calls: list[Callable[[], Awaitable[None]]]
                           ) -> None:
        """Ack a durable prefix: the source's ``ack(value)``, then the per-record callbacks
        of the units it covers, in source order. Failures are logged only."""
        if self.ack is not None:
            calls = [functools.partial(self.ack, value), *calls]
        for call in calls:
            try:
                await call()
            except Exception as exc:
                # The records are durable whatever the source says; a lost ack can only
                # make an upstream redeliver them (at least once), so the run goes on.
                self.ack_failures += 1
                log.error("source %r: an ack failed after its records were made durable; "
                          "the run goes on (unacked records may be delivered again): %s%s",
                          self.source_name, type(exc).__name__, value_free_detail(exc))
            else:
                self.acks += 1

    def _checkpoint_of(self, value: Any) -> Checkpoint:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"source {self.source_name!r} returned a checkpoint that is not a JSON value "
                f"({type(value).__name__}: {value!r:.80}); current_checkpoint() must return "
                f"JSON-serialisable data"
            ) from exc
        return Checkpoint(pipeline_id=self.pipeline_id, run_id=self.run_id,
                          source=self.source_name, value=value)

    def _start(self, value: Any, checkpoint: Checkpoint,
               acks: list[Callable[[], Awaitable[None]]]) -> None:
        assert self.store is not None and self._in_flight is None
        if self._executor is None:
            # One thread: the store sees one caller at a time, as on the loop.
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix=CHECKPOINT_THREAD_PREFIX)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.store.save, self.key, checkpoint)
        self._in_flight = _SaveInFlight(value, future, acks)

    async def settle(self) -> None:
        """Wait for the save in flight (if any) and take its outcome; ``RunStop`` if it
        failed under fail-closed. A cancellation while waiting is re-raised only after
        the save ended — a store write on a thread cannot be stopped half-way."""
        job = self._in_flight
        if job is None:
            return
        cancelled = False
        while not job.future.done():
            try:
                await asyncio.wait([job.future])
            except asyncio.CancelledError:
                cancelled = True
        stop = self._take_outcome()
        if cancelled:
            if stop is not None:
                log.error("checkpoint save failed while the run was being cancelled: %s: %s",
                          type(stop.error).__name__, stop.error)
            raise asyncio.CancelledError  # unacked: its records may be delivered again
        self._raise_if_fatal(stop)
        await self._acknowledge(job.value, job.acks)

    def _take_outcome(self) -> RunStop | None:
        """Count the finished save in flight; the ``RunStop`` to raise if it failed fatally."""
        job = self._in_flight
        assert job is not None and job.future.done()
        self._in_flight = None
        return self._outcome(job.value, job.future.exception())

    async def finish(self) -> None:
        """At shutdown, whatever ended the run: wait for the save in flight and release the
        save thread. A failure is counted and logged, never raised (the run already has
        its outcome); a save that failed after the run's last commit point under
        fail-closed was raised by ``save(wait=True)``."""
        try:
            if self._in_flight is not None:
                try:
                    await self.settle()
                except RunStop as stop:
                    log.error("checkpoint save failed while the run was stopping: %s: %s",
                              type(stop.error).__name__, stop.error)
                except asyncio.CancelledError:
                    pass  # the save ended (settle waits for it); shutdown must still run
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True)  # idle by now: the join is immediate

    def _outcome(self, value: Any, exc: BaseException | None) -> RunStop | None:
        """Count one save's outcome; the ``RunStop`` to raise if the run must stop."""
        if exc is None:
            self.checkpoint_saves += 1
            self.last_checkpoint = value
            return None
        self.checkpoint_failures += 1
        if self.config.checkpoint_failure_policy is CheckpointFailurePolicy.FAIL_CLOSED:
            return RunStop(exc)
        log.error("checkpoint save failed (checkpoint_failure_policy=log_and_continue): %s", exc)
        return None

    @staticmethod
    def _raise_if_fatal(stop: RunStop | None) -> None:
        if stop is not None:
            raise stop from stop.error


#: Name prefix of the thread that writes checkpoints in the background (tests look for
#: leftovers by it).
CHECKPOINT_THREAD_PREFIX = "agora-checkpoint"


class _SaveInFlight:
    """A store write running on the save thread: the position it names, and its future."""

    __slots__ = ("value", "future", "acks")

    def __init__(self, value: Any, future: asyncio.Future[None],
                 acks: list[Callable[[], Awaitable[None]]]) -> None:
        self.value = value
        self.future = future
        self.acks = acks  # the per-record callbacks to run once it succeeded
