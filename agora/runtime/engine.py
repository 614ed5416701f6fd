"""The run engine: start components in order, pump the source through the chain, commit
units in source order, and shut everything down — whatever happens.

::

      source ──► [dispatch] ──► prefix stages ──► middle stages (task) ──► [commit] ─► done
     (units)        │           (in order)        process-isolated,          │
                    │                             up to W units in flight    ├─ suffix stages (in order)
                    └── MalformedRecord ──────────────────────────────────► ├─ Writer: sinks
                                                                             ├─ Committer: DLQ, policies
                                                                             └─ checkpoint (handled prefix)

*Dispatch* pulls one source emission at a time and wraps it in a ``Unit`` with the
source position after it. Stages before the first process-isolated middleware run
inline, in source order. *Middle* stages (first to last process-isolated middleware) run
in one asyncio task per unit, so up to ``W = min(max_in_flight_batches)`` units overlap
in the worker pool. *Commit* takes units strictly in source order — a failed or empty
unit waits its turn — runs the remaining stages, writes, hands failures to the DLQ or
the failure policy, and lets the checkpoint advance over the unit. Nothing in a unit is
"handled" until commit, so the checkpoint never passes a record that is still in flight.
*Pacing* (``pacing.py``) decides how far dispatch runs ahead of commit — an I/O lane
holds more units than it runs, so a finished call's slot is refilled at once — and how
long a partial row group waits for a slow source. The pump's row and batch branches stay
side by side here, which takes this module past 400 lines (about 520): split, they would
hide the dispatch rules they share. A source that declares ``supports_prefetch`` is read
ahead by ``SourcePrefetch`` (``prefetch.py``); dispatch then takes each emission's position
and ack callback from the read-ahead, as captured when it was read.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn

from agora.config import DeliveryConfig
from agora.errors import SourceRecordError
from agora.middleware.base import AnyMiddleware, MiddlewareContext
from agora.planes import DataPlane
from agora.records import DLQStage, MalformedRecord
from agora.runtime.delivery import Committer, RunStop
from agora.runtime.interrupt import StopFlag, handle_signals
from agora.runtime.io_lane import HOLD_PER_SLOT
from agora.runtime.lifecycle import Lifecycle
from agora.runtime.pacing import TIMED_OUT, Admission, Puller
from agora.runtime.plan import Lane, Plan, WriterTarget
from agora.runtime.prefetch import PrefetchFigures, SourcePrefetch
from agora.runtime.progress import PROGRESS_INTERVAL_S, Progress
from agora.runtime.stages import Stage
from agora.runtime.report import summarise
from agora.runtime.resources import ResourceSampler
from agora.runtime.summary import PipelineRunSummary
from agora.runtime.units import Failure, Unit
from agora.runtime.writer import Writer
from agora.sinks.fanout import SinkFanOut
from agora.sinks.router import SinkRouter
from agora.sources.base import BaseSource, batch_num_rows

__all__ = ["Progress", "run_pipeline"]

log = logging.getLogger("agora.engine")

#: How often the pump hands the event loop a turn when nothing it awaits suspends (all
#: in-process, synchronous work). Cancellation of ``run()`` and other tasks are served at
#: least this often; each turn costs microseconds, so 50 ms is far below 1% overhead.
YIELD_INTERVAL_S = 0.05


class _Abandoned(Exception):
    """Internal: an in-flight unit was given up after a stop request."""


class _Run:
    def __init__(self, *, pipeline_id: str, source: BaseSource,
                 middleware: Sequence[AnyMiddleware], writer: WriterTarget, plan: Plan,
                 config: DeliveryConfig,
                 progress: Callable[[Progress], None] | None,
                 stop: StopFlag | None = None, signals: bool = True,
                 run_id: str | None = None, checkpoint_key: str | None = None) -> None:
        self.pipeline_id = pipeline_id
        self.stop = stop or StopFlag()
        self.signals = signals
        self.left_early = False  # the source was not read to its end: interrupted
        self.summary: PipelineRunSummary | None = None
        self._stop_seen: set[str] = set()  # stop states already acted on (requested, forced)
        self._drain_timer: asyncio.TimerHandle | None = None
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.source = source
        self.middleware = middleware
        self.plan = plan
        self.config = config
        self.router = writer if isinstance(writer, SinkRouter) else None
        self.sinks = [sp.sink for sp in plan.sinks]
        self.progress_cb = progress
        self.progress = Progress()
        self._last_progress = 0.0
        self.consumed = self.written = self.dropped = self.errored = 0
        self.partially_written = 0
        self.contexts = [
            MiddlewareContext(pipeline_id, self.run_id, mw.name, i)
            for i, mw in enumerate(middleware)
        ]
        linear = plan.lane is Lane.LINEAR
        self.stages = [Stage(mw, ctx, per_record_batches=linear, stop=self.stop)
                       for mw, ctx in zip(middleware, self.contexts, strict=True)]
        # Process-isolated and I/O-lane stages overlap units; the rest run inline.
        proc = [i for i, st in enumerate(self.stages) if st.window is not None]
        self.prefix: list[Stage]
        self.middle: list[Stage]
        self.suffix: list[Stage]
        if proc:
            self.prefix = self.stages[: proc[0]]
            self.middle = self.stages[proc[0] : proc[-1] + 1]
            self.suffix = self.stages[proc[-1] + 1 :]
            self.window = min(st.window for st in self.stages if st.window is not None)
        else:
            self.prefix, self.middle, self.suffix, self.window = self.stages, [], [], 1
        io = any(st.io_lane is not None for st in self.middle)
        self.admission = Admission(run=self.window, eager=io,
                                   hold=self.window * (HOLD_PER_SLOT if io else 1))
        self.writer = Writer(plan, self.router, sink_concurrency=(
            writer.sink_concurrency if isinstance(writer, SinkFanOut) else 1))
        self.checkpoint_key = config.checkpoint_key or checkpoint_key or pipeline_id
        self.committer = Committer(
            config=config, pipeline_id=pipeline_id, run_id=self.run_id,
            source_name=source.source_name, checkpoint_key=self.checkpoint_key,
            sinks=self.sinks, checkpoint_supported=bool(source.supports_checkpoint),
            ack=source.ack,
            flush_concurrency=self.writer.sink_concurrency,
        )
        self.pending: collections.deque[Unit] = collections.deque()
        self.committing: Unit | None = None
        self.in_flight_records = 0
        # The source position after the last emission the pump took (see ``_pump``).
        self.position: Callable[[], Any] = source.current_checkpoint
        self.prefetch: SourcePrefetch | None = None
        self.lifecycle = Lifecycle(
            source=source, middleware=middleware, contexts=self.contexts, sinks=self.sinks,
            config=config, checkpoint_key=self.checkpoint_key, on_resume=self._resumed)

    # -- lifecycle --------------------------------------------------------------------
    async def execute(self) -> PipelineRunSummary:
        """Run once. Returns the summary; raises the run's original exception, or
        ``KeyboardInterrupt`` / ``CancelledError`` after a stop — ``self.summary`` is set
        whichever way the run ends."""
        started = time.perf_counter()
        primary: BaseException | None = None
        cleanup_error: BaseException | None = None
        self.stop.bind(asyncio.get_running_loop())
        self.stop.on_change(self._on_stop_request)
        # The handlers stay in place through shutdown, so a first or second signal there
        # cannot break a file close half-way.
        guard: AbstractContextManager[object] = (
            handle_signals(self.stop) if self.signals else nullcontext())
        with ResourceSampler() as sampler, guard:
            try:
                await self.lifecycle.start()
                await self._pump()
                # End of stream or stop: the handled prefix, and any save still in flight.
                await self.committer.save(wait=True)
            except BaseException as exc:
                primary = exc
                await self._cancel_pending()
            finally:
                if self._drain_timer is not None:
                    self._drain_timer.cancel()
                await self.committer.finish()  # no save in flight when the store closes
                cleanup_error = await self.lifecycle.stop(primary)
                error = primary.error if isinstance(primary, RunStop) else primary
                self.summary = self._summary(started, sampler, error or cleanup_error)
        if primary is not None:
            raise primary.error if isinstance(primary, RunStop) else primary
        if self.left_early:
            # The stop is why the run ended: a cleanup failure after it (logged by the
            # lifecycle, kept in the summary) is chained, never raised in its place.
            stopped = (asyncio.CancelledError() if self.stop.reason == "cancelled"
                       else KeyboardInterrupt())
            raise stopped from cleanup_error
        if cleanup_error is not None:
            raise cleanup_error
        return self.summary

    def _resumed(self, checkpoint_value: Any) -> None:
        self.committer.last_checkpoint = checkpoint_value

    def _on_stop_request(self) -> None:
        """On the run's loop after a stop request: bound the wait for in-flight units."""
        stop = self.stop
        state = "forced" if stop.forced else "requested"
        if state in self._stop_seen:
            return
        first = not self._stop_seen
        self._stop_seen.add(state)
        if stop.reason != "cancelled":  # a person pressed Ctrl-C: tell them what happens next
            if stop.forced:
                log.warning("agora: %s — abandoning the work in flight and shutting down",
                            stop.reason)
            else:
                log.warning("agora: %s — no more records are read; work in flight gets up to "
                            "%.0fs to commit (send it again to abandon it)", stop.reason,
                            stop.drain_s)
        if stop.forced:
            self._abandon_in_flight()
        elif first:
            loop = asyncio.get_running_loop()
            self._drain_timer = loop.call_at(
                loop.time() + max(0.0, stop.deadline - time.monotonic()), self._abandon_in_flight)

    def _abandon_in_flight(self) -> None:
        units = list(self.pending)
        if self.committing is not None:
            units.append(self.committing)
        for unit in units:
            unit.abandoned = True
            if unit.task is not None and not unit.task.done():
                unit.task.cancel()

    async def _cancel_pending(self) -> None:
        tasks = []
        for unit in self.pending:
            unit.abandoned = True
            if unit.task is not None:
                tasks.append(unit.task)  # a finished one too: its outcome is taken here
                unit.task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.pending.clear()

    # -- the pump ---------------------------------------------------------------------
    async def _pump(self) -> None:
        """Read the source to its end, or until a stop request; then commit what is in
        flight (abandoning it once the stop says so). Returns normally after a stop,
        with ``left_early`` set, so the handled prefix is still checkpointed."""
        source = self.source
        linear = self.plan.lane is Lane.LINEAR
        agen: Any = source.stream() if linear else source.stream_batches()
        hook = getattr(source, "delivery_success_callback", None)
        limit = self.plan.explain.source_prefetch_limit
        if limit is not None:
            # Read ahead: every position and ack callback the pump uses is the one taken
            # with the emission when it was read, never the source's current one, which
            # may already be past emissions still queued.
            prefetch = self.prefetch = SourcePrefetch(
                agen, limit=limit, position=source.current_checkpoint, ack_hook=hook,
                size=_one if linear else _emission_rows,
                max_buffer=self.config.max_buffer_size, held=lambda: self.in_flight_records)
            agen = prefetch
            self.position = lambda: prefetch.position
            hook = None if hook is None else prefetch.ack
        puller = self.puller = Puller(agen, hook)
        interval = self.config.batch_flush_interval_ms
        flush_s = None if interval is None else interval / 1000.0
        loop = asyncio.get_running_loop()
        stop = self.stop
        yielded_at = time.monotonic()
        exhausted = False  # the source said it has nothing more (as opposed to a stop)
        try:
            try:
                if linear:
                    seq = 0
                    group: list[Any] = []
                    group_cp: Any = None  # source position after the group's last record
                    group_size = min(self.config.batch_size, self.config.max_buffer_size)
                    current_checkpoint = self.position
                    group_since = 0.0  # loop time the group's first record arrived
                    # Without a flush deadline or per-record acks a pull is the source's
                    # own: skip the puller's frame on the per-record path.
                    pull = agen.__anext__ if flush_s is None and hook is None else None
                    while not stop.requested:  # checked before every pull
                        try:
                            item = await (pull() if pull is not None else puller.next(
                                None if flush_s is None or not (group or self.pending)
                                else group_since + flush_s - loop.time() if group else flush_s))
                        except StopAsyncIteration:
                            exhausted = True
                            break
                        except Exception as exc:
                            await self._source_failed(exc)
                        if item is TIMED_OUT:  # the source is slow: hand on what waits
                            if group:
                                await self._dispatch(self._row_unit(seq, group, group_cp))
                                seq += 1
                                group = []
                            await self.admission.commit_finished(self.pending, self._commit)
                            await self.committer.save()
                            continue
                        if not group and flush_s is not None:
                            group_since = loop.time()
                        if isinstance(item, MalformedRecord):
                            if group:  # committed first, with its own position (not past the marker)
                                await self._dispatch(self._row_unit(seq, group, group_cp))
                                seq += 1
                                group = []
                            await self._dispatch(self._malformed_unit(seq, item))
                            seq += 1
                        else:
                            group.append(item)
                            group_cp = current_checkpoint()
                            if len(group) >= group_size:
                                await self._dispatch(self._row_unit(seq, group, group_cp))
                                seq += 1
                                group = []
                        if time.monotonic() - yielded_at >= YIELD_INTERVAL_S:
                            await asyncio.sleep(0)  # lets a cancel() of run() reach us
                            yielded_at = time.monotonic()
                    if group and exhausted:
                        await self._dispatch(self._row_unit(seq, group, group_cp))
                    elif group:  # pulled but never started after a stop: re-read on resume
                        self.consumed += len(group)
                else:
                    seq = 0
                    while not stop.requested:
                        try:
                            item = await puller.next()
                        except StopAsyncIteration:
                            exhausted = True
                            break
                        except Exception as exc:
                            await self._source_failed(exc)
                        if isinstance(item, MalformedRecord):
                            unit = self._malformed_unit(seq, item)
                        else:
                            unit = self._batch_unit(seq, item)
                            unit.acks = puller.take(1)
                        await self._dispatch(unit)
                        seq += 1
                        if time.monotonic() - yielded_at >= YIELD_INTERVAL_S:
                            await asyncio.sleep(0)
                            yielded_at = time.monotonic()
                if not exhausted:
                    self.left_early = True
                for stage in self.middle:  # nothing more is coming: buffering stages drain
                    if stage.io_lane is not None:
                        await stage.io_lane.end_of_input()
                while self.pending:
                    await self._commit(self.pending.popleft())
            finally:
                await puller.cancel()
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    await aclose()
        except _Abandoned:
            self.left_early = True
            await self._cancel_pending()
        except asyncio.CancelledError:
            # run() was cancelled: stop like a forced interrupt, keep the handled prefix.
            stop.request("cancelled", force=True)
            self.left_early = True
            await self._cancel_pending()

    async def _source_failed(self, exc: Exception) -> NoReturn:
        """The source raised while being read (``Puller.next``): offer the failure to the
        DLQ (``Committer.offer_source_failure``) and raise the source's own exception — the
        one a ``SourceRecordError(record=…)`` wraps when it wraps one. Called from the
        pump's except clauses, so a pull costs no extra coroutine."""
        try:
            position = self.position()
        except Exception:  # the position is a detail of the DLQ record: never the error
            position = None
        await self.committer.offer_source_failure(exc, checkpoint=position)
        if isinstance(exc, SourceRecordError) and exc.original is not None:
            raise exc.original from exc
        raise exc

    def _row_unit(self, seq: int, group: list[Any], checkpoint: Any) -> Unit:
        self.consumed += len(group)
        unit = Unit(seq=seq, checkpoint=checkpoint, n_source=len(group), source_rows=group,
                    values=list(group))
        if self.puller.hooked:
            unit.acks = self.puller.take(len(group))
        return unit

    def _malformed_unit(self, seq: int, item: MalformedRecord) -> Unit:
        self.consumed += 1
        unit = Unit(seq=seq, checkpoint=self.position(), n_source=1,
                    malformed=item, acks=self.puller.take(1))
        err = SourceRecordError(self.source.source_name, item.location, item.reason, hint=False)
        unit.failures.append(Failure(DLQStage.SOURCE_RECORD, self.source.source_name, err, item.raw))
        unit.errored = 1
        return unit

    def _batch_unit(self, seq: int, batch: Any) -> Unit:
        checkpoint = self.position()
        if self.plan.source_plane is DataPlane.ARROW_BATCHES:
            n = batch.num_rows
            self.consumed += n
            if self.plan.materialize_rows:
                rows = batch.to_pylist()
                return Unit(seq=seq, checkpoint=checkpoint, n_source=n, source_rows=rows,
                            values=list(rows))
            return Unit(seq=seq, checkpoint=checkpoint, n_source=n, batch=batch, source_batch=batch)
        rows = list(batch)
        self.consumed += len(rows)
        return Unit(seq=seq, checkpoint=checkpoint, n_source=len(rows), source_rows=rows,
                    values=list(rows))

    async def _dispatch(self, unit: Unit) -> None:
        if unit.malformed is None:
            for stage in self.prefix:
                await stage.apply(unit)
            if unit.abandoned:  # a row stage saw the stop and gave the unit up
                self.pending.append(unit)
                raise _Abandoned
            if self.middle:
                unit.task = asyncio.create_task(self._run_middle(unit))
                self.admission.track(unit.task)
        self.in_flight_records += unit.n_source
        if unit.task is None and not self.pending and self.admission.hold <= 1:
            await self._commit(unit)  # nothing is held: this unit is the head, commit it now
            return
        self.pending.append(unit)
        await self.admission.make_room(
            self.pending, self._commit,
            lambda: self.in_flight_records > self.config.max_buffer_size)

    async def _run_middle(self, unit: Unit) -> None:
        for stage in self.middle:
            await stage.apply(unit)

    async def _commit(self, unit: Unit) -> None:
        self.in_flight_records -= unit.n_source
        if unit.task is not None:
            self.committing = unit  # out of ``pending`` but still in flight: abandonable
            try:
                await unit.task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if unit.abandoned and (task is None or not task.cancelling()):
                    raise _Abandoned from None  # given up by the stop, not a cancel of run()
                raise
            finally:
                self.committing = None
            unit.task = None
        if unit.malformed is None:
            for stage in self.suffix:
                await stage.apply(unit)
            if unit.abandoned:
                raise _Abandoned
            await self.writer.write(unit)
        # Counted before the committer decides: a record that stops a fail-closed run is
        # still a record this run wrote or failed, and the summary must say so.
        self.written += unit.written
        self.dropped += unit.dropped
        self.errored += unit.errored
        self.partially_written += unit.partially_written
        await self.committer.handle(unit)
        if self.progress_cb is not None:
            now = time.perf_counter()
            if now - self._last_progress >= PROGRESS_INTERVAL_S:
                self._last_progress = now
                self._report_progress()

    def _report_progress(self, done: bool = False) -> None:
        p = self.progress
        p.consumed, p.written, p.dropped, p.errored, p.done = (
            self.consumed, self.written, self.dropped, self.errored, done)
        assert self.progress_cb is not None
        self.progress_cb(p)

    # -- summary ----------------------------------------------------------------------
    def prefetch_figures(self) -> PrefetchFigures:
        return PrefetchFigures() if self.prefetch is None else self.prefetch.figures()

    def _summary(self, started: float, sampler: ResourceSampler,
                 error: BaseException | None) -> PipelineRunSummary:
        if self.progress_cb is not None:
            self._report_progress(done=True)
        return summarise(self, elapsed=time.perf_counter() - started, sampler=sampler,
                         error=error)


def _one(item: Any) -> int:
    return 1


def _emission_rows(item: Any) -> int:
    """Records in a batch emission (a malformed-record marker is one)."""
    return 1 if isinstance(item, MalformedRecord) else batch_num_rows(item)


async def run_pipeline(*, pipeline_id: str, source: BaseSource,
                       middleware: Sequence[AnyMiddleware], writer: WriterTarget, plan: Plan,
                       config: DeliveryConfig,
                       progress: Callable[[Progress], None] | None = None,
                       on_summary: Callable[[PipelineRunSummary], None] | None = None,
                       stop: StopFlag | None = None, signals: bool = True,
                       run_id: str | None = None, checkpoint_key: str | None = None,
                       ) -> PipelineRunSummary:
    """Run once (see the module docstring). ``on_summary`` receives the summary however
    the run ends; ``stop`` lets a caller request a stop; ``signals=False`` leaves the
    process's SIGINT/SIGTERM handlers alone; ``run_id`` names the run (default: random);
    ``checkpoint_key`` is the key used when the config names none (default: the pipeline
    id)."""
    run = _Run(pipeline_id=pipeline_id, source=source, middleware=middleware, writer=writer,
               plan=plan, config=config, progress=progress, stop=stop, signals=signals,
               run_id=run_id, checkpoint_key=checkpoint_key)
    try:
        return await run.execute()
    finally:
        if run.summary is not None and on_summary is not None:
            on_summary(run.summary)
