"""What both process middlewares share: parameters and their validation, the pool's
lifecycle (``on_start`` / ``on_stop``), submission, and the direct-drive methods 0.3.0
programs call (``submit_batch``, ``process``, ``_runner``)."""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Callable
from typing import Any

from agora.errors import LifecycleError, ProcessBatchError, ProcessPoolBrokenError
from agora.middleware.base import MiddlewareContext
from agora.process.executor import Executor, Lease, LeaseSpec
from agora.process.executors import PerRunExecutor
from agora.process.handles import PoolGeneration, PoolMetrics
from agora.process.transport import Transport

__all__ = ["DEFAULT_MAX_POOL_RECYCLES", "STOP_GRACE_S", "ProcessLane"]

#: Consecutive pool recycles (timeouts or worker deaths) without any batch coming back
#: before the pool is declared broken. High enough to isolate a few poison batches in a
#: row; low enough that a transform that kills every worker stops the run in seconds.
DEFAULT_MAX_POOL_RECYCLES = 8
#: How long on_stop lets idle workers exit on their own before killing them.
STOP_GRACE_S = 1.0


class ProcessLane:
    """Shared parameters, validation, lifecycle and submission of both lanes."""

    name: str
    _kind_label: str
    _transport_factory: Callable[[], Transport]

    async def submit(self, batch_index: int, batch: Any, /) -> Any:
        raise NotImplementedError  # each lane defines it; declared for submit_batch()

    def _configure(
        self,
        fn: Callable[[Any], Any],
        *,
        max_workers: int | None,
        ordered: bool,
        timeout_s: float | None,
        max_in_flight_batches: int,
        name: str,
        max_pool_recycles: int,
        executor: Executor | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self._kind_label}: name must be a non-empty string; got {name!r}")
        label = f"{self._kind_label} {name!r}"
        if not callable(fn):
            raise TypeError(f"{label}: fn must be callable; got {type(fn).__name__}")
        if max_workers is not None:
            _require_int(label, "max_workers", max_workers, "or None for one per CPU")
        _require_int(label, "max_in_flight_batches", max_in_flight_batches, "")
        _require_int(label, "max_pool_recycles", max_pool_recycles, "")
        if timeout_s is not None:
            if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
                raise TypeError(f"{label}: timeout_s must be a number of seconds or None; "
                                f"got {timeout_s!r}")
            if not timeout_s > 0:
                raise ValueError(
                    f"{label}: timeout_s must be > 0 seconds (or None for no timeout); "
                    f"got {timeout_s!r}"
                )
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"{label}: executor must be None (a pool per run), an agora.WorkerPool or "
                f"another executor with an async acquire(spec) method; got {executor!r}"
            )
        if not isinstance(ordered, bool):
            raise TypeError(f"{label}: ordered must be True or False; got {ordered!r}")
        # An fn that cannot be pickled is not refused here: programs written for 0.3.0
        # build the middleware first and learn it from the first batch. The pool then
        # never starts and every batch fails with ProcessPoolBrokenError carrying this
        # reason, which stops a run before any record is committed.
        fn_bytes: bytes | None = None
        self._unpicklable: str | None = None
        try:
            fn_bytes = pickle.dumps(fn, protocol=5)
        except Exception as exc:  # noqa: BLE001 - PicklingError, AttributeError, TypeError…
            self._unpicklable = (
                f"fn {fn!r} cannot be pickled ({type(exc).__name__}: {exc}); define fn at "
                "module top level (lambdas/closures cannot cross a process boundary)"
            )
        self.name = name
        self.fn = fn
        self.max_workers = max_workers
        self.ordered = ordered
        self.timeout_s = float(timeout_s) if timeout_s is not None else None
        self.max_in_flight_batches = max_in_flight_batches
        self.max_pool_recycles = max_pool_recycles
        self._fn_bytes = fn_bytes
        self.executor = executor
        self._pool: Lease | None = None
        self._started = False
        self._handle: PoolGeneration | None = None
        self._last_metrics: dict[str, Any] = {
            **PoolMetrics().as_dict(), "pool_state": "new", "generation": 0,
            "workers": self.workers,
        }
        self._ctx: MiddlewareContext | None = None
        self._auto_index = 0
        self._local_failures = 0

    @property
    def workers(self) -> int:
        """Worker processes per generation: ``max_workers`` (default: one per CPU), but
        never more than ``max_in_flight_batches`` — an extra worker would never get work
        and still cost ~50 MB."""
        wanted = self.max_workers if self.max_workers is not None else (os.cpu_count() or 1)
        return max(1, min(wanted, self.max_in_flight_batches))

    def describe(self) -> dict[str, Any]:
        """JSON-ready configuration, for ``explain()``."""
        return {
            "name": self.name,
            "lane": self._transport_factory().lane,
            "workers": self.workers,
            "max_in_flight_batches": self.max_in_flight_batches,
            "ordered": self.ordered,
            "timeout_s": self.timeout_s,
            "max_pool_recycles": self.max_pool_recycles,
            "executor": "per-run" if self.executor is None else type(self.executor).__name__,
        }

    async def on_start(self, ctx: MiddlewareContext) -> None:
        """Start the worker pool (generation 1) and wait until every worker has loaded fn.

        Raises ``NotImplementedError`` for ``ordered=False`` with more than one batch in
        flight and ``WorkerStartupError`` when fn cannot be loaded in a worker, both
        before any worker is left running. An fn that cannot be pickled starts nothing:
        every batch of the run then fails with ``ProcessPoolBrokenError``.
        """
        if self._started:
            raise LifecycleError(f"{self._kind_label} {self.name!r} is already started")
        if not self.ordered and self.max_in_flight_batches > 1:
            raise NotImplementedError(
                f"{self._kind_label} {self.name!r}: unordered pipelined commit is not "
                f"available (ordered=False with max_in_flight_batches="
                f"{self.max_in_flight_batches}); use ordered=True — results are still "
                "computed concurrently — or max_in_flight_batches=1"
            )
        self._ctx = ctx
        self._local_failures = 0
        self._auto_index = 0
        if self._fn_bytes is not None:
            executor: Executor = self.executor if self.executor is not None else PerRunExecutor()
            self._pool = await executor.acquire(self._lease_spec(self._fn_bytes))
        self._started = True

    def _lease_spec(self, fn_bytes: bytes) -> LeaseSpec:
        return LeaseSpec(
            name=self.name,
            lane=self._transport_factory().lane,
            fn_bytes=fn_bytes,
            fn_label=(
                getattr(self.fn, "__module__", None) or "?",
                getattr(self.fn, "__qualname__", None) or type(self.fn).__name__,
            ),
            workers=self.workers,
            timeout_s=self.timeout_s,
            max_pool_recycles=self.max_pool_recycles,
        )

    async def on_stop(self, ctx: MiddlewareContext) -> None:
        """Stop the pool: idle workers get ``STOP_GRACE_S`` to exit, busy ones are killed.
        Afterwards no worker process remains, whatever state the run ended in."""
        pool, self._pool = self._pool, None
        self._started, self._handle = False, None
        if pool is None:
            if self._unpicklable is not None:
                self._last_metrics = {**self._last_metrics, "pool_state": "broken",
                                      "batches_submitted": self._local_failures,
                                      "batches_failed": self._local_failures}
            return
        try:
            await pool.release(STOP_GRACE_S)
        finally:
            pool.kill_now()
            self._last_metrics = self._snapshot(pool)
            ctx.metrics.update(self._last_metrics)

    def metrics(self) -> dict[str, Any]:
        """Counters of the current (or last) run, plus the pool's state; JSON-ready."""
        if self._pool is not None:
            return self._snapshot(self._pool)
        return dict(self._last_metrics)

    def _snapshot(self, pool: Lease) -> dict[str, Any]:
        metrics = dict(pool.metrics())
        # Batches that failed in the driver (could not be pickled) never reached the pool.
        for key in ("batches_submitted", "batches_failed"):
            metrics[key] = int(metrics.get(key, 0)) + self._local_failures
        return metrics

    def worker_pids(self) -> list[int]:
        """PIDs of the current generation's live workers (empty when stopped)."""
        return self._pool.worker_pids() if self._pool is not None else []

    @property
    def generation(self) -> int:
        return self._pool.generation if self._pool is not None else 0

    async def _submit(self, batch_index: int, payload: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise self._not_running(batch_index)
        return await pool.run(batch_index, payload)

    def _not_running(self, batch_index: int) -> Exception:
        """Why a batch cannot run now: the middleware is stopped, or its fn cannot be
        pickled (then the pool is broken from the start, for every batch)."""
        if not self._started:
            return LifecycleError(
                f"{self._kind_label} {self.name!r}: used before on_start() or after "
                "on_stop(); the runtime starts the pool before the source opens"
            )
        self._count_local_failure()
        return ProcessPoolBrokenError(
            f"{self._unpicklable}; the pool never started, so no batch of this run can run",
            middleware_name=self.name,
            batch_index=batch_index,
        )

    @property
    def _runner(self) -> PoolGeneration | None:
        """The running pool generation (0.3.0 programs read this name): the same object
        while the generation serves batches, a new one after a recycle, None when the
        middleware is stopped."""
        if not self._started:
            return None
        generation = self.generation
        if self._handle is None or self._handle.generation != generation:
            self._handle = PoolGeneration(self.name, generation)
        return self._handle

    async def submit_batch(self, batch: Any, ctx: MiddlewareContext) -> asyncio.Task[Any]:
        """Start one batch (numbered like ``process_batch``) and return the task that
        resolves to its result, without waiting for it: up to ``max_in_flight_batches``
        batches then run at once. The task raises what ``process_batch`` would."""
        if not self._started:
            raise self._not_running(self._auto_index)
        self._auto_index += 1
        task: asyncio.Task[Any] = asyncio.ensure_future(self.submit(self._auto_index - 1, batch))
        await asyncio.sleep(0)  # let the batch reach the pool before the caller goes on
        return task

    def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        """Not supported: a process middleware works on whole batches. Raises
        ``LifecycleError`` (a RuntimeError) saying which source to use."""
        raise LifecycleError(
            f"{self._kind_label} {self.name!r} requires a batch-capable source; per-record "
            "execution is not supported — read with a batch source (e.g. IterableBatchSource, "
            "ArrowCsvSource), or use an in-process Middleware"
        )

    def _error(self, batch_index: int, cause: str) -> ProcessBatchError:
        pool = self._pool
        return ProcessBatchError(
            cause,
            middleware_name=self.name,
            batch_index=batch_index,
            generation=pool.generation if pool is not None else 0,
        )

    def _count_local_failure(self) -> None:
        self._local_failures += 1


def _require_int(label: str, param: str, value: Any, alternative: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label}: {param} must be an int; got {value!r}")
    if value < 1:
        extra = f" ({alternative})" if alternative else ""
        raise ValueError(f"{label}: {param} must be >= 1{extra}; got {value!r}")


