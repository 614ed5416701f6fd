"""The worker pool behind the process lanes: generations, dispatch, timeouts and deaths.

(Over ~400 lines on purpose: one state machine on one event loop whose callbacks share
every field; what can stand alone lives beside it — ``courier.py`` moves batches and
results, ``workers.py`` starts and retires one worker, ``sampler.py`` measures them.)

::

    submit() ─► Ticket ─► queue ─────────────┐            ┌─ worker process (gen g) ──────┐
                                             ▼            │                               │
              suspects (re-run one ──► _pump() ─► Worker ─┼─ RUN(seq) ───► fn(batch)      │
              at a time after a death)        │   in slot ◄── batch (main writes)         │
                                              │   out slot ──► result (worker writes)     │
                                              ▼            └─ OK/ERR(seq) ────────────────┘
     loop.add_reader(pipe)      ─► _on_message ─► Ticket.future (result or ProcessBatchError)
     loop.add_reader(sentinel)  ─► _on_death   ─► _recycle ─► generation g+1, suspects
     loop.call_later(timeout_s) ─► _on_timeout ─► _recycle ─► generation g+1, siblings invalidated

**Ticket** — one submitted batch. It keeps its payload until it is resolved, so a batch
caught in a worker death can be re-run. Resolved exactly once; later news is ignored.

**Worker** — one process, its pipe and its two shared-memory slots (``shm.py``;
``workers.py`` starts and retires one). It belongs to one generation and serves one
ticket at a time, so a reply names its batch unambiguously (it also carries the dispatch
``seq``, checked against the slot header). The **Courier** (``courier.py``) moves a
batch into the in slot and the result out, growing a slot that is too small. When a
slot's space cannot be reserved (``/dev/shm`` full or too small), that batch — or that
result, on the worker's side — crosses over the pipe instead; the pool counts these
fallbacks (``shm_fallbacks_in``/``_out``) and logs the first one with the fix.

**Generation** — the workers started together. A timeout or a worker death retires the
whole generation: its process groups are SIGKILLed (grandchildren included), its pipes
closed, its slots unlinked — a killed worker can therefore never deliver a stale or
half-written result — and a fresh generation is started *before* the next batch is
dispatched. The run never waits for the stuck code.

**LanePool** — lives on the event-loop thread and is driven by callbacks only; no call
blocks for longer than a slot memcpy or a forkserver round trip. After a timeout the
timed-out batch fails (``timed_out``) and its running siblings fail (``invalidated``).
After a death the culprit is unknown (the kernel's OOM killer picks the biggest process,
not the guilty one), so every batch that was running is re-run alone on the fresh pool;
only a batch that kills its worker again fails. More than ``max_pool_recycles`` recycles
in a row without any batch coming back breaks the pool: every waiting batch and every
later submit fails with the recorded reason (:class:`ProcessPoolBrokenError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from agora.errors import ProcessBatchError, ProcessPoolBrokenError, WorkerStartupError
from agora.process.courier import Courier
from agora.process.handles import (
    PoolMetrics,
    PoolState,
    Registry,
    RemoteTraceback,
    Ticket,
    WorkerHandle,
    describe_exit,
    kill_group,
)
from agora.process.sampler import SAMPLE_INTERVAL_S, WorkerSampler
from agora.process.shm import ShmFull, shm_dir, sweep_stale_slots
from agora.process.startup import (
    explain_death,
    explain_load_error,
    importing_main,
    last_line,
    sweep_stale_reports,
    take_report,
)
from agora.process.transport import Transport, recv_raw
from agora.process.worker import (
    EXIT_MEMORY_ERROR,
    OK,
    OP_ERR,
    OP_INIT_ERROR,
    OP_MEMORY,
    OP_OK,
    OP_READY,
    STOP,
    VIA_SLOT,
    decode_message,
)
from agora.process.workers import retire_worker, spawn_worker
from agora.process.zygote import await_zygote_exit, zygote_context, zygote_pid

__all__ = [
    "LanePool",
    "PoolMetrics",
    "PoolState",
    "ProcessPoolBrokenError",
    "Ticket",
    "WorkerStartupError",
]

log = logging.getLogger("agora.process")

#: How long on_start waits for the first generation to report ready.
STARTUP_TIMEOUT_S = 60.0


class LanePool:
    """Runs ``fn`` (pickled in ``fn_bytes``) on ``workers`` processes; see the module doc.

    All methods must be called on the event loop that ran :meth:`start` (or the last
    :meth:`attach`). Between two leases a shared ``agora.WorkerPool`` parks it
    (:meth:`detach`): its idle workers stay alive, bound to no loop.
    """

    def __init__(
        self,
        *,
        name: str,
        transport: Transport,
        fn_bytes: bytes,
        workers: int,
        timeout_s: float | None,
        max_pool_recycles: int,
        preload: Sequence[str] = (),
        fn_label: tuple[str, str] = ("", "fn"),
    ) -> None:
        """``fn_label`` is ``(module, qualname)`` of ``fn``, for start-up messages."""
        self.name = name
        self.transport = transport
        self.fn_bytes = fn_bytes
        self.size = workers
        self.timeout_s = timeout_s
        self.max_pool_recycles = max_pool_recycles
        self.metrics = PoolMetrics()
        self.generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._preload = [m for m in preload if m and m != "__main__"]
        self._fn_label = fn_label
        self._ctx: Any = zygote_context(self._preload)
        self._workers: list[WorkerHandle] = []
        self._graveyard: list[WorkerHandle] = []
        self._queue: deque[Ticket] = deque()
        self._suspects: list[Ticket] = []
        self._isolating = False
        self._unresolved = 0
        self._seq = 0
        self._consecutive_recycles = 0
        self._broken: str | None = None
        self._closed = False
        self._parked = False
        self._starting: asyncio.Future[None] | None = None
        self._sampler: asyncio.TimerHandle | None = None
        self._registry = Registry()
        self._courier = Courier(
            name=name, transport=transport, metrics=self.metrics, registry=self._registry
        )
        self._worker_stats = WorkerSampler(self.metrics)
        self._finalizer = weakref.finalize(self, Registry.kill_all, self._registry)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start generation 1 and wait until every worker has loaded ``fn``.

        Raises :class:`WorkerStartupError` if a worker cannot load ``fn`` or dies first.
        """
        self._loop = asyncio.get_running_loop()
        if importing_main():
            # This process is a worker re-running the main script: starting processes
            # here can only fail (and must not recurse); say why, loudly, in its report.
            raise WorkerStartupError(
                f"process middleware {self.name!r} was started while a worker process was "
                f"importing the main script; guard the code that runs the pipeline with "
                f'`if __name__ == "__main__":`'
            )
        try:
            self._courier.shm_dir = shm_dir()
        except ValueError as exc:
            raise WorkerStartupError(f"process middleware {self.name!r}: {exc}") from None
        sweep_stale_slots(self._courier.shm_dir)
        sweep_stale_reports()
        self._starting = self._loop.create_future()
        try:
            try:
                self._open_first_generation()
            except ShmFull as exc:
                raise WorkerStartupError(
                    f"process middleware {self.name!r}: cannot create the workers' "
                    f"shared-memory slots: {exc}"
                ) from None
            await asyncio.wait_for(asyncio.shield(self._starting), STARTUP_TIMEOUT_S)
        except TimeoutError:
            self.kill_now()
            raise WorkerStartupError(
                f"process middleware {self.name!r}: workers did not start within "
                f"{STARTUP_TIMEOUT_S:g} s"
            ) from None
        except BaseException:
            self.kill_now()
            raise
        finally:
            self._starting = None
        self._sampler = self._loop.call_later(SAMPLE_INTERVAL_S, self._sample)

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop the pool: idle workers exit cleanly within ``grace_s``, busy ones (and
        every straggler, grandchildren included) are killed; slots are unlinked.
        Unresolved batches fail. Afterwards no worker process of this pool remains."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._sampler is not None:
                self._sampler.cancel()
            self._sample(reschedule=False)
            for ticket in self._drain_waiting():
                self._fail(ticket, "the pool was stopped before this batch ran")
            for worker in self._workers:
                if worker.ticket is not None:
                    self._fail(worker.ticket, "the pool was stopped while this batch ran")
                    kill_group(worker.pid)
                else:
                    with contextlib.suppress(OSError):
                        worker.conn.send_bytes(STOP)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(
                w.process.exitcode is None for w in self._workers
            ):
                await asyncio.sleep(0.005)
        finally:
            self.kill_now()
        deadline = time.monotonic() + 5.0
        while self._graveyard and time.monotonic() < deadline:
            self._reap()
            if self._graveyard:
                await asyncio.sleep(0.005)

    def kill_now(self) -> None:
        """Synchronously kill every worker and unlink every slot (also the cleanup of
        last resort for a cancelled ``stop()``)."""
        self._closed = True
        if self._sampler is not None:
            self._sampler.cancel()
        for worker in self._workers:
            self._retire(worker)
        self._workers = []
        self._registry.kill_all()
        self._reap()

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers if not w.dead]

    @property
    def state(self) -> PoolState:
        if self._broken is not None:
            return PoolState.BROKEN
        if self._closed:
            return PoolState.STOPPED
        if self._parked:
            return PoolState.IDLE
        if self._loop is None:
            return PoolState.NEW
        if self._starting is not None:
            return PoolState.STARTING
        return PoolState.ISOLATING if self._isolating else PoolState.RUNNING

    @property
    def broken_reason(self) -> str | None:
        return self._broken

    # ------------------------------------------------------------------ reuse

    def reusable(self) -> bool:
        """True when every worker is alive and idle and nothing is queued: the pool can
        serve another lease as it is (anything else is stopped instead)."""
        return (
            self._broken is None
            and not self._closed
            and not self._isolating
            and not self._queue
            and not self._suspects
            and bool(self._workers)
            and all(self._idle_and_alive(w) for w in self._workers)
        )

    @staticmethod
    def _idle_and_alive(worker: WorkerHandle) -> bool:
        if worker.ticket is not None or worker.dead or worker.process.exitcode is not None:
            return False
        # An idle worker sends nothing: a readable pipe means it hung up (it died, and
        # its exit status may not have arrived yet) or said something out of turn.
        try:
            return not worker.conn.poll()
        except (OSError, EOFError):
            return False

    def detach(self) -> None:
        """Park a :meth:`reusable` pool: stop watching its workers on the current loop
        (which may close) and take a last metrics sample. Its workers stay alive."""
        assert self._loop is not None and self.reusable()
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        self._sample(reschedule=False)
        for worker in self._workers:
            self._loop.remove_reader(worker.conn.fileno())
            self._loop.remove_reader(worker.process.sentinel)
        self._parked = True

    def attach(
        self, *, name: str, timeout_s: float | None, max_pool_recycles: int
    ) -> None:
        """Serve a new lease from a parked pool, on the running loop, with fresh metrics
        and a fresh recycle budget. ``fn`` and the lane are the pool's own."""
        assert self._parked
        loop = asyncio.get_running_loop()
        self._loop, self._parked = loop, False
        self.name = self._courier.name = name
        self.timeout_s, self.max_pool_recycles = timeout_s, max_pool_recycles
        self.metrics = PoolMetrics()
        self._courier.metrics = self.metrics
        self._worker_stats = WorkerSampler(self.metrics)
        self._consecutive_recycles, self._unresolved = 0, 0
        for worker in self._workers:
            loop.add_reader(worker.conn.fileno(), self._on_readable, worker)
            loop.add_reader(worker.process.sentinel, self._on_sentinel, worker)
        self._sampler = loop.call_later(SAMPLE_INTERVAL_S, self._sample)

    def close_parked(self, grace_s: float) -> None:
        """Stop a parked pool without an event loop: idle workers are asked to exit,
        stragglers killed after ``grace_s``, slots unlinked, processes reaped."""
        self._closed = True
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(STOP)
        deadline = time.monotonic() + grace_s
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            if not worker.retired:
                worker.retired = True
                kill_group(worker.pid)
                self._registry.pids.discard(worker.pid)
                worker.conn.close()
                self._graveyard.append(worker)
        self._workers = []
        self._registry.kill_all()
        for worker in list(self._graveyard):
            worker.process.join(5.0)
        self._reap()

    # ------------------------------------------------------------------ submit

    def submit(self, ticket: Ticket) -> None:
        """Queue ``ticket``; its future resolves with the result or a ProcessBatchError."""
        self.metrics.batches_submitted += 1
        self._unresolved += 1
        self.metrics.peak_in_flight = max(self.metrics.peak_in_flight, self._unresolved)
        ticket.generation = self.generation
        if self._broken is not None:
            self._fail_broken(ticket)
            return
        if self._closed:
            self._fail(ticket, "the pool is stopped")
            return
        self._queue.append(ticket)
        self._pump()

    def abandon(self, ticket: Ticket) -> None:
        """The submitter stopped waiting (its task was cancelled). A queued ticket is
        dropped; a running one finishes (or is killed by stop) and its result discarded."""
        if ticket in self._queue:
            self._queue.remove(ticket)
        if ticket in self._suspects:
            self._suspects.remove(ticket)
        self._settle(ticket)
        self._pump()

    # ------------------------------------------------------------------ generations

    def _open_first_generation(self) -> None:
        """Open generation 1. If the forkserver died while preloading ``fn``'s module
        (the module raises when imported in a fresh process), retry once without
        preloading it: the workers then import it themselves and report why it fails."""
        try:
            self._open_generation()
        except (EOFError, ConnectionError) as exc:
            for worker in self._workers:
                self._retire(worker)
            self._workers, self.generation = [], 0
            await_zygote_exit()
            report = take_report(zygote_pid())  # complete now that it has exited
            if not self._preload:
                raise WorkerStartupError(
                    f"process middleware {self.name!r}: the forkserver that starts workers "
                    f"failed ({last_line(report) or f'{type(exc).__name__}: {exc}'})"
                ) from None
            self._ctx = zygote_context(drop=self._preload)
            self._preload = []
            self._open_generation()

    def _open_generation(self) -> None:
        self.generation += 1
        self._workers = []
        for index in range(self.size):  # appended one by one: a failed spawn leaves the
            self._workers.append(self._spawn(index))  # started ones retirable

    def _spawn(self, index: int) -> WorkerHandle:
        assert self._loop is not None
        worker = spawn_worker(
            self._ctx,
            name=f"agora-{self.name}-g{self.generation}-w{index}",
            generation=self.generation,
            lane=self.transport.lane,
            fn_bytes=self.fn_bytes,
            capacities=(self._courier.slot_capacity[0], self._courier.slot_capacity[1]),
            shm_dir=self._courier.shm_dir,
            registry=self._registry,
        )
        self._loop.add_reader(worker.conn.fileno(), self._on_readable, worker)
        self._loop.add_reader(worker.process.sentinel, self._on_sentinel, worker)
        return worker

    def _retire(self, worker: WorkerHandle) -> None:
        """Retire ``worker`` (idempotent) and keep it until its process can be reaped."""
        if worker.retired:
            return
        assert self._loop is not None
        retire_worker(worker, self._loop, self._registry)
        self._graveyard.append(worker)

    def _reap(self) -> None:
        for worker in list(self._graveyard):
            if worker.process.exitcode is not None:
                if not worker.ready:
                    take_report(worker.pid)  # a start-up report nobody asked for
                worker.process.close()
                self._graveyard.remove(worker)

    def _recycle(self, reason: str) -> None:
        """Retire the current generation and open the next, unless the budget is spent."""
        started = time.perf_counter()
        self._sample(reschedule=False)
        for worker in self._workers:
            self._retire(worker)
        self._workers = []
        self.metrics.pool_recycles += 1
        if self._consecutive_recycles >= self.max_pool_recycles:
            self._break(
                f"the worker pool gave up after {self._consecutive_recycles} consecutive pool "
                f"recycles without any batch coming back (last: {reason}); fn kills or hangs "
                "its worker on every batch — fix fn, or raise max_pool_recycles"
            )
        else:
            self._consecutive_recycles += 1
            try:
                self._open_generation()
            except Exception as exc:  # noqa: BLE001 - a pool that cannot restart is broken
                self._break(
                    f"could not start a new worker generation ({type(exc).__name__}: {exc})"
                )
        self.metrics.recycle_seconds += time.perf_counter() - started
        self._reap()

    def _break(self, reason: str) -> None:
        """Record why the pool is unusable; every unresolved and later batch learns it."""
        self._broken = reason
        running = [w.ticket for w in self._workers if w.ticket is not None]
        for worker in self._workers:
            self._retire(worker)
        self._workers = []
        for ticket in [*running, *self._drain_waiting()]:
            self._fail_broken(ticket)

    def _drain_waiting(self) -> list[Ticket]:
        waiting = [*self._suspects, *self._queue]
        self._suspects.clear()
        self._queue.clear()
        return waiting

    # ------------------------------------------------------------------ dispatch

    def _pump(self) -> None:
        """Hand waiting tickets to idle workers. After a death, suspects run one at a time
        and nothing else is dispatched until they are all resolved."""
        if self._broken is not None or self._closed:
            return
        if self._isolating:
            if any(w.ticket is not None for w in self._workers):
                return
            while self._suspects:
                worker = self._idle_worker()
                if worker is None:
                    return
                self._dispatch(worker, self._suspects.pop(0))
                if worker.ticket is not None:
                    return  # one suspect at a time
            self._isolating = False
        while self._queue:
            worker = self._idle_worker()
            if worker is None:
                return
            self._dispatch(worker, self._queue.popleft())

    def _idle_worker(self) -> WorkerHandle | None:
        for worker in self._workers:
            if worker.ticket is None and not worker.dead:
                return worker
        return None

    def _dispatch(self, worker: WorkerHandle, ticket: Ticket) -> None:
        assert self._loop is not None
        try:
            nbytes, inline = self._courier.load(worker, ticket)
        except Exception as exc:  # noqa: BLE001 - the batch cannot be encoded: its failure
            self._fail(ticket, f"the batch could not be written for the worker: {exc!r}")
            return
        self._seq += 1
        ticket.seq, ticket.worker, ticket.generation = self._seq, worker, worker.generation
        worker.ticket = ticket
        self._courier.post(worker, ticket.seq, nbytes, inline)
        if self.timeout_s is not None:
            ticket.timer = self._loop.call_later(
                self.timeout_s, self._on_timeout, ticket, ticket.seq
            )

    # ------------------------------------------------------------------ events

    def _on_readable(self, worker: WorkerHandle) -> None:
        if worker.retired:
            return
        try:
            message = worker.conn.recv_bytes()
            data = None
            if message[0] == OP_OK:
                _, _seq, nbytes, via = OK.unpack(message)
                if via != VIA_SLOT:  # the result follows on the pipe: read it all now
                    data = recv_raw(worker.conn, nbytes)
        except (EOFError, OSError):
            self._on_pipe_closed(worker)
        else:
            self._on_message(worker, message, data)
        self._pump()

    def _on_message(self, worker: WorkerHandle, message: bytes, data: Any) -> None:
        op = message[0]
        if op == OP_OK:
            _, seq, nbytes, via = OK.unpack(message)
            self._on_ok(worker, seq, nbytes, via, data)
        elif op == OP_ERR:
            seq, kind, summary, detail = decode_message(message)
            self._on_error(worker, seq, kind, summary, detail)
        elif op == OP_READY:
            worker.ready = True
            starting = self._starting
            if starting is not None and not starting.done():
                if all(w.ready for w in self._workers):
                    starting.set_result(None)
        elif op == OP_MEMORY:
            worker.note = describe_exit(EXIT_MEMORY_ERROR, "")
        elif op == OP_INIT_ERROR:
            stage, summary, detail = decode_message(message)
            self._on_init_error(worker, stage, summary, detail)

    def _on_ok(
        self, worker: WorkerHandle, seq: int, nbytes: int, via: int, data: Any
    ) -> None:
        ticket = worker.ticket
        if ticket is None or ticket.seq != seq:
            return  # not the dispatch this worker is serving: never commit it
        worker.ticket = None
        self._consecutive_recycles = 0
        self.metrics.transport_bytes_out += nbytes
        try:
            result = self._courier.unload(worker, ticket, seq, nbytes, via, data)
        except Exception as exc:  # noqa: BLE001
            self._fail(ticket, f"the result could not be read back: {exc!r}")
            return
        self._settle(ticket)
        if not ticket.future.done():
            ticket.future.set_result(result)
            self.metrics.batches_ok += 1

    def _on_error(self, worker: WorkerHandle, seq: int, kind: str, summary: str, detail: str) -> None:
        ticket = worker.ticket
        if ticket is None or ticket.seq != seq:
            return
        worker.ticket = None
        self._consecutive_recycles = 0
        cause = {
            "raised": f"fn raised {summary}",
            "result": summary,
            "decode": f"the worker could not decode the batch: {summary}",
            "encode": f"fn's result could not be sent back ({summary}); "
            + (
                "return a pyarrow.RecordBatch"
                if self.transport.lane == "arrow"
                else "return plain picklable values"
            ),
        }.get(kind, summary)
        self._fail(ticket, cause, remote_traceback=detail)

    def _on_init_error(self, worker: WorkerHandle, stage: str, summary: str, detail: str) -> None:
        if stage == "fn":
            reason = "a worker could not load fn: " + explain_load_error(
                self._fn_label[1], self._fn_label[0], summary
            )
        else:
            reason = f"a worker could not map its shared-memory slots ({summary})"
        if self._starting is not None and not self._starting.done():
            error = WorkerStartupError(f"process middleware {self.name!r}: {reason}")
            error.__cause__ = RemoteTraceback(detail)
            self._starting.set_exception(error)
            return
        self._break(reason)

    def _on_pipe_closed(self, worker: WorkerHandle) -> None:
        assert self._loop is not None
        self._loop.remove_reader(worker.conn.fileno())
        if worker.process.exitcode is not None:
            self._on_death(worker)
        else:
            # Normally the sentinel fires within milliseconds; if fn closed the pipe and
            # lives on, it is killed so the sentinel does fire.
            self._loop.call_later(1.0, kill_group, worker.pid)

    def _on_sentinel(self, worker: WorkerHandle) -> None:
        if worker.retired:
            return
        assert self._loop is not None
        self._loop.remove_reader(worker.process.sentinel)
        self._on_death(worker)
        self._pump()

    def _on_death(self, worker: WorkerHandle) -> None:
        if worker.retired or worker.dead:
            return
        worker.dead = True
        if self._closed:
            return  # stop() asked it to exit
        self.metrics.worker_deaths += 1
        cause = describe_exit(worker.process.exitcode, worker.note)
        report = take_report(worker.pid) if not worker.ready else ""
        if self._starting is not None and not self._starting.done():
            error = WorkerStartupError(
                f"process middleware {self.name!r}: {explain_death(cause, report)}"
            )
            if report:
                error.__cause__ = RemoteTraceback(report)
            self._starting.set_exception(error)
            return
        if report:
            cause = f"{cause} before it was ready ({last_line(report)})"
        # Batches whose submitter gave up (cancelled) are not worth a re-run.
        running = [
            w.ticket for w in self._workers if w.ticket is not None and not w.ticket.future.done()
        ]
        culprit = worker.ticket
        if culprit is not None and culprit.suspect and culprit in running:
            # It ran alone on a fresh pool after an earlier death: it is the culprit.
            self._fail(
                culprit,
                f"{cause} while running this batch alone on a fresh pool (re-run after an "
                "earlier worker death): the batch kills its worker",
            )
            running.remove(culprit)
        for ticket in running:
            if ticket.timer is not None:
                ticket.timer.cancel()
            ticket.suspect, ticket.worker = True, None
        for w in self._workers:
            w.ticket = None
        reason = f"batch {culprit.batch_index}: {cause}" if culprit else cause
        self._recycle(reason)
        if self._broken is not None:
            for ticket in running:
                self._fail_broken(ticket)
            return
        self._suspects = sorted([*running, *self._suspects], key=lambda t: t.batch_index)
        self._isolating = True

    def _on_timeout(self, ticket: Ticket, seq: int) -> None:
        if ticket.seq != seq or ticket.worker is None or ticket.worker.retired:
            return
        generation = ticket.generation
        self.metrics.batches_timed_out += 1
        self._fail(
            ticket,
            f"timed out after {self.timeout_s:g} s; pool generation {generation} was killed "
            "and replaced (raise timeout_s if batches legitimately take longer)",
            timed_out=True,
        )
        siblings = [w.ticket for w in self._workers if w.ticket not in (None, ticket)]
        for w in self._workers:
            w.ticket = None
        self._recycle(f"batch {ticket.batch_index} timed out after {self.timeout_s:g} s")
        for sibling in siblings:
            assert sibling is not None
            if not sibling.future.done():
                self.metrics.batches_invalidated += 1
            self._fail(
                sibling,
                f"invalidated: it was running on pool generation {generation}, which was "
                f"killed because batch {ticket.batch_index} timed out; its result was "
                "discarded (the batch itself did not fail and may be replayed)",
                invalidated=True,
            )
        self._pump()

    # ------------------------------------------------------------------ resolution

    def _settle(self, ticket: Ticket) -> None:
        """Stop counting ``ticket`` as in flight. (A running ticket keeps its worker busy
        until the worker replies or is killed, even when nobody waits for it any more.)"""
        if ticket.timer is not None:
            ticket.timer.cancel()
            ticket.timer = None
        if not ticket.settled:
            ticket.settled = True
            self._unresolved -= 1

    def _fail(
        self,
        ticket: Ticket,
        cause: str,
        *,
        timed_out: bool = False,
        invalidated: bool = False,
        remote_traceback: str = "",
        error_type: type[ProcessBatchError] = ProcessBatchError,
    ) -> None:
        self._settle(ticket)
        if ticket.future.done():
            return
        error = error_type(
            cause,
            middleware_name=self.name,
            batch_index=ticket.batch_index,
            timed_out=timed_out,
            invalidated=invalidated,
            generation=ticket.generation,
        )
        if remote_traceback:
            error.__cause__ = RemoteTraceback(remote_traceback)
        self.metrics.batches_failed += 1
        ticket.future.set_exception(error)

    def _fail_broken(self, ticket: Ticket) -> None:
        assert self._broken is not None
        self._fail(ticket, self._broken, error_type=ProcessPoolBrokenError)

    # ------------------------------------------------------------------ metrics

    def _sample(self, reschedule: bool = True) -> None:
        self._worker_stats.sample(self._workers)
        if reschedule and not self._closed and self._loop is not None:
            self._sampler = self._loop.call_later(SAMPLE_INTERVAL_S, self._sample)
