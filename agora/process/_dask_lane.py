"""A lease on a Dask cluster: one middleware's batches for one run, with their failures.

::

    run(batch) ─► slot (two per worker thread) ─► client.submit(run_batch, batch)
                                                                    │
        result ◄── checked (length / row count) ◄── await future ◄──┤ worker runs fn
        ProcessBatchError ◄── fn raised / KilledWorker ◄────────────┤ Dask re-runs a batch
                                                                    │ whose worker died
        timeout_s ─► cancel the future ─► restart the worker running it (its nanny
                     kills the process) ─► the batch fails (timed_out) ─► slot freed

**Slots** — the lease keeps up to two batches per worker thread on the cluster (an
asyncio semaphore; more wait in the driver): the next batch is already queued on a
worker when the current one ends, hiding Dask's ~10 ms round trip. The timeout clock of
a batch starts when its worker reports that it started it (an event on a topic of the
lease), so time spent queued never counts.

**Timeouts** — the future is cancelled first, so nothing it returns can ever be
committed, and then the worker running it is restarted, so the stuck code stops burning
CPU. Only that worker is touched: batches on other workers go on, none is invalidated.

**Deaths** — a batch whose worker died comes back as ``KilledWorker`` (at once on a
cluster the executor owns, whose ``allowed-failures`` is 0; on another cluster after Dask's
own re-runs). The culprit is unknown, so the lease re-runs it *alone*: new batches wait
and the ones in flight finish first. Only a batch that kills its worker again fails
("worker died"); the innocent bystanders of a death go through.

(Just over 400 lines: slots, timeouts and death isolation share one lease's state and
lock; ``_dask_ops.py`` holds the counters, the functions run on a worker or its nanny, and
the wait for a result against its clock; ``_dask_task.py`` what a worker runs per batch.)

**Broken** — more than ``max_pool_recycles`` timeouts or deaths in a row without any
batch coming back break the lease: that batch and every later one fail with
``ProcessPoolBrokenError`` (terminal for the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa

from agora.errors import LifecycleError, ProcessBatchError, ProcessPoolBrokenError
from agora.process._dask_ops import (
    DaskLeaseMetrics,
    WorkerLost,
    compact,
    expire,
    result_unless_expired,
    size_of,
    stop_worker_process,
    worker_rss,
)
from agora.process._dask_task import run_batch

__all__ = ["DaskLease", "DaskLeaseMetrics"]

log = logging.getLogger("agora.process")

#: How long release() waits for the cancellations it started.
REAP_WAIT_S = 10.0


class DaskLease:
    """One middleware's ``fn`` on a Dask cluster for one run (an executor ``Lease``).

    Built by :meth:`DaskExecutor.acquire` with an asynchronous client on the run's
    event loop; every method must be called on that loop. :meth:`run` raises
    :class:`ProcessBatchError` for a failed batch and :class:`ProcessPoolBrokenError`
    once the lease is broken.
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        lane: str,
        fn_bytes: bytes,
        timeout_s: float | None,
        max_pool_recycles: int,
        slots: int,
        worker_pids: dict[str, int],
    ) -> None:
        self.name = name
        self.lane = lane
        self.counters = DaskLeaseMetrics()
        self._client = client
        self._fn_bytes = fn_bytes
        self._timeout_s = timeout_s
        self._max_recycles = max_pool_recycles
        self._slots = asyncio.Semaphore(slots)
        self._in_flight: dict[str, Any] = {}  # dask key -> distributed.Future
        self._worker_pids = worker_pids
        self._rss_peak: dict[int, int] = {}
        self._reaping: set[asyncio.Task[None]] = set()
        # Per batch: a future that the timeout clock resolves; the clock starts when the
        # worker reports the batch started (run_batch logs its key on this topic).
        self._clocks: dict[str, asyncio.Future[None]] = {}
        self._topic: str | None = None
        if timeout_s is not None:
            self._topic = f"agora-started-{name}-{uuid.uuid4().hex}"
            client.subscribe_topic(self._topic, self._on_started)
        self._strikes = 0  # timeouts and deaths since a batch last came back
        # Isolation after a worker death: the gate closes while a suspect re-runs alone.
        self._gate = asyncio.Event()
        self._gate.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._active = 0
        self._suspects = 0
        self._suspect_lock = asyncio.Lock()
        self._broken: str | None = None
        self._closed = False

    async def run(self, batch_index: int, payload: Any) -> Any:
        """Run ``fn`` on one encoded batch (pickled rows or a ``RecordBatch``); return
        the checked result (a list, or a ``RecordBatch`` with the same row count)."""
        self._check_usable(batch_index)
        async with self._slots:
            self._check_usable(batch_index)
            try:
                async with self._alongside_others():
                    return await self._run_in_slot(batch_index, payload)
            except WorkerLost as lost:
                self._strike(batch_index, f"worker died ({lost.cause})")
            # Its worker died; the culprit is unknown. Re-run it with nothing else of this
            # lease on the cluster: if it kills its worker again, it is the culprit.
            async with self._alone():
                self._check_usable(batch_index)
                try:
                    return await self._run_in_slot(batch_index, payload)
                except WorkerLost as lost:
                    raise self._failure(
                        batch_index, "worker died while running it, and again when it was "
                        f"re-run alone ({lost.cause})", strike=True,
                    ) from lost.cause

    @contextlib.asynccontextmanager
    async def _alongside_others(self) -> AsyncIterator[None]:
        await self._gate.wait()  # closed while a suspect batch runs alone
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def _alone(self) -> AsyncIterator[None]:
        self._suspects += 1
        self._gate.clear()
        try:
            async with self._suspect_lock:
                await self._idle.wait()
                yield
        finally:
            self._suspects -= 1
            if self._suspects == 0:
                self._gate.set()

    async def _run_in_slot(self, batch_index: int, payload: Any) -> Any:
        import dask
        from distributed import KilledWorker  # a lease exists only when it imports
        from distributed.client import FutureCancelledError

        client = self._client
        key = f"agora-{self.name}-{batch_index}-{uuid.uuid4().hex[:12]}"
        self.counters.batches_submitted += 1
        # The batch travels inside the task, not scattered to one worker: the scheduler
        # then holds it until the result is back, so Dask can re-run the batch after its
        # worker died (scattered data would die with that worker). Sending it is the
        # point, hence no "large graph" warning.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"}):
            future = client.submit(run_batch, self._fn_bytes, self.lane, compact(payload),
                                   self._topic, key, key=key, pure=False, retries=0)
        self._in_flight[key] = future
        expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._clocks[key] = expired
        self.counters.transport_bytes_in += size_of(payload)
        self.counters.peak_in_flight = max(self.counters.peak_in_flight, len(self._in_flight))
        try:
            try:
                result = await result_unless_expired(future, expired)
            except TimeoutError:
                self._in_flight.pop(key, None)
                generation = self.generation  # the one it ran on, before the restart
                await self._retire(future)
                self.counters.batches_timed_out += 1
                raise self._failure(
                    batch_index,
                    f"timed out after {self._timeout_s:g} s (timeout_s); the batch was "
                    "cancelled and the Dask worker running it restarted",
                    timed_out=True,
                    strike=True,
                    generation=generation,
                ) from None
            except KilledWorker as exc:
                self.counters.worker_deaths += 1
                raise WorkerLost(exc) from exc
            except FutureCancelledError as exc:
                # Not our cancellation: someone cancelled the task on the cluster (an
                # operator, a client.restart()). It failed there, so it fails here.
                raise self._failure(
                    batch_index, f"the Dask cluster cancelled it ({exc}); was the cluster "
                    "restarted or the task cancelled by another client?",
                ) from exc
            except asyncio.CancelledError:
                self._in_flight.pop(key, None)
                self._reap_later(future)
                raise
            except Exception as exc:  # noqa: BLE001 - fn's own exception, carried back
                raise self._failure(
                    batch_index, f"fn raised {type(exc).__name__}: {exc}"
                ) from exc
        finally:
            clock = self._clocks.pop(key, None)
            if clock is not None and not clock.done():
                clock.cancel()  # also stops its timer (see _on_started)
            if self._in_flight.pop(key, None) is not None:  # not handed to _retire
                future.release()
        self.counters.transport_bytes_out += size_of(result)
        checked = self._check_result(batch_index, payload, result)
        self._strikes = 0
        self.counters.batches_ok += 1
        return checked

    def _on_started(self, event: tuple[float, Any]) -> None:
        """A worker started one of our batches: start its timeout clock now."""
        _, msg = event
        clock = self._clocks.get(msg.get("key", "")) if isinstance(msg, dict) else None
        if clock is None or clock.done() or self._timeout_s is None:
            return  # already resolved, or a report from an earlier attempt
        timer = asyncio.get_running_loop().call_later(self._timeout_s, expire, clock)
        clock.add_done_callback(lambda _: timer.cancel())

    def _check_usable(self, batch_index: int) -> None:
        if self._broken is not None:
            self.counters.batches_submitted += 1
            self.counters.batches_failed += 1
            raise ProcessPoolBrokenError(self._broken, middleware_name=self.name,
                                         batch_index=batch_index, generation=self.generation)
        if self._closed:
            raise LifecycleError(f"process middleware {self.name!r}: its Dask lease was "
                                 "released; a lease serves one run only")

    def _strike(self, batch_index: int, cause: str) -> None:
        """Count a timeout or a death; past the budget the lease is broken (raises)."""
        self._strikes += 1
        if self._strikes > self._max_recycles:
            self._broken = (
                f"{self._strikes} timeouts or worker deaths in a row with no batch coming "
                f"back (max_pool_recycles={self._max_recycles}); last: {cause} — fix fn "
                "or raise timeout_s"
            )
            self.counters.batches_failed += 1
            raise ProcessPoolBrokenError(self._broken, middleware_name=self.name,
                                         batch_index=batch_index, generation=self.generation)

    def _failure(self, batch_index: int, cause: str, *, timed_out: bool = False,
                 strike: bool = False, generation: int | None = None) -> ProcessBatchError:
        generation = self.generation if generation is None else generation
        if strike:
            try:
                self._strike(batch_index, cause)
            except ProcessPoolBrokenError as broken:
                return broken
        self.counters.batches_failed += 1
        return ProcessBatchError(cause, middleware_name=self.name, batch_index=batch_index,
                                 timed_out=timed_out, generation=generation)

    def _check_result(self, batch_index: int, payload: Any, result: Any) -> Any:
        if self.lane == "rows":
            expected, pickled = result
            rows = pickle.loads(pickled)
            if not isinstance(rows, list):
                raise self._failure(batch_index, "fn must return a list (one result per "
                                    f"record, None to drop); got {type(rows).__name__}")
            if len(rows) != expected:
                raise self._failure(batch_index, f"fn must return one result per record "
                                    f"(input and output lengths must match); got {len(rows)} "
                                    f"results for {expected} records")
            return rows
        if not isinstance(result, pa.RecordBatch):
            raise self._failure(batch_index, "fn must return a pyarrow.RecordBatch; got "
                                f"{type(result).__name__}")
        if result.num_rows != payload.num_rows:
            raise self._failure(batch_index, "fn must preserve the row count (the row count "
                                f"must match); got {result.num_rows} rows for "
                                f"{payload.num_rows}")
        return result

    async def _retire(self, future: Any) -> None:
        """Cancel ``future`` (nothing it returns is used) and restart the worker running
        it, so its code stops. Never raises: the batch's own failure is what matters."""
        started = time.monotonic()
        client = self._client
        try:
            processing = await client.processing()
            await client.cancel([future], force=True)
            workers = [addr for addr, keys in processing.items() if future.key in keys]
            if workers:
                outcome = await client.run(stop_worker_process, workers=workers,
                                           nanny=True, on_error="return")
                stopped = [a for a in workers if outcome.get(a) == "stopped"]
                self.counters.workers_restarted.extend(stopped)
                self.counters.pool_recycles += len(stopped)
                for addr in stopped:
                    self._worker_pids.pop(addr, None)
                failed = {a: outcome.get(a) for a in workers if a not in stopped}
                if failed:
                    log.warning(
                        "process middleware %r on Dask: could not stop the worker(s) running "
                        "a stuck batch (%s); its result is discarded but its code may run "
                        "on — run workers under a nanny (the default of 'dask worker')",
                        self.name, failed)
        except Exception as exc:  # noqa: BLE001 - a cleanup step; logged, never masking
            log.warning("process middleware %r on Dask: could not stop a stuck batch on the "
                        "cluster (%s: %s); its result is discarded", self.name,
                        type(exc).__name__, exc)
        finally:
            with contextlib.suppress(Exception):
                future.release()
            self.counters.recycle_seconds += time.monotonic() - started

    def _reap_later(self, future: Any) -> None:
        # A cancelled run() must not wait for the cluster; release() awaits the reaping.
        task = asyncio.get_running_loop().create_task(self._retire(future))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def release(self, grace_s: float) -> None:
        """End the lease: cancel what is still on the cluster, restart the workers
        running it, wait for that (bounded), then disconnect. Afterwards nothing of this
        lease runs anywhere. ``grace_s`` is unused: idle Dask workers are the cluster's,
        and busy ones are stopped at once (nobody wants their results)."""
        self._closed = True
        try:
            for key in list(self._in_flight):
                future = self._in_flight.pop(key)
                self._reap_later(future)
            if self._reaping:
                await asyncio.wait(set(self._reaping), timeout=REAP_WAIT_S)
            with contextlib.suppress(Exception):
                await self._sample_rss()
        finally:
            if self._topic is not None:
                with contextlib.suppress(Exception):
                    self._client.unsubscribe_topic(self._topic)
            await self._client.close()

    def kill_now(self) -> None:
        """Last resort after a cancelled :meth:`release`: ask the cluster to cancel what
        is left (fire and forget). Idempotent."""
        self._closed = True
        for key in list(self._in_flight):
            future = self._in_flight.pop(key)
            with contextlib.suppress(Exception):
                self._reap_later(future)

    def worker_pids(self) -> list[int]:
        """PIDs of the cluster's workers seen at start, minus the ones restarted since."""
        return sorted(self._worker_pids.values())

    @property
    def generation(self) -> int:
        """1 at start, +1 per worker restarted by a timeout or a cancellation."""
        return 1 + self.counters.pool_recycles

    @property
    def state(self) -> str:
        if self._broken is not None:
            return "broken"
        return "stopped" if self._closed else "running"

    def metrics(self) -> dict[str, Any]:
        """JSON-ready counters under the local pool's keys, plus ``pool_state``,
        ``generation`` and ``executor="dask"``."""
        rss = self._rss_peak
        return {
            **self.counters.as_dict(),
            "shm_fallbacks_in": 0,
            "shm_fallbacks_out": 0,
            "worker_peak_rss_bytes": max(rss.values(), default=0),
            "worker_peak_rss_by_pid": {str(p): v for p, v in rss.items()},
            "worker_cpu_seconds": 0.0,
            "pool_state": self.state,
            "generation": self.generation,
            "executor": "dask",
            "workers_restarted": list(self.counters.workers_restarted),
        }

    async def _sample_rss(self) -> None:
        samples = await self._client.run(worker_rss, on_error="return")
        for value in samples.values():
            if isinstance(value, tuple):
                pid, rss = value
                self._rss_peak[pid] = max(self._rss_peak.get(pid, 0), rss)
