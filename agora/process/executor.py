"""The executor seam: what a process lane needs from whatever runs its ``fn`` elsewhere.

A process middleware (``ProcessBatchMiddleware`` / ``ArrowProcessBatchMiddleware``)
talks to an :class:`Executor` in three steps::

    on_start  ─► executor.acquire(LeaseSpec) ─► Lease     (workers have loaded fn)
    submit    ─► await lease.run(batch_index, payload)    (one call per batch, concurrent)
    on_stop   ─► await lease.release(grace_s)             (then lease.kill_now(), always)

**LeaseSpec** — everything the executor needs to run one middleware's ``fn``: the lane,
``fn`` pickled once, how many workers, the per-batch timeout and the recycle budget.

**Lease** — one middleware's use of an executor for one run. The rules every lease keeps
are the rules of the process lanes; an executor that cannot keep one must not exist:

* ``run`` resolves with ``fn``'s result (rows lane: a list of the same length; Arrow
  lane: a ``RecordBatch`` with the same row count, in memory the driver owns) or raises
  :class:`~agora.errors.ProcessBatchError` naming ``spec.name`` and the batch index.
* **Timeout**: a batch running longer than ``spec.timeout_s`` (clock from when it reaches
  a worker) fails with ``timed_out=True``; the workers that ran it are killed (their
  descendants too) and replaced before the next batch is dispatched; batches running
  beside it on those workers fail with ``invalidated=True``. No stale result is returned.
* **Worker death**: the batches caught in it are re-run one at a time on fresh workers;
  only a batch that kills its worker again fails. More than ``spec.max_pool_recycles``
  recycles in a row without a batch coming back raises
  :class:`~agora.errors.ProcessPoolBrokenError` for every waiting and later batch.
* **Cancellation**: when the task awaiting ``run`` is cancelled, the batch is dropped if
  queued, and its result discarded if running; ``release``/``kill_now`` stop the rest.
* **Isolation between leases**: batches of different leases never share a worker
  generation, so one middleware's timeout or crash never invalidates another's batches.
* **No orphans**: after ``release`` + ``kill_now`` no worker process that ran this
  lease's batches remains busy; an executor that keeps idle workers warm for later
  leases must kill them all when it is closed, and at interpreter exit at the latest.
* Checkpoints, the DLQ and sink delivery never reach the executor: the driver commits
  results in source order and routes failures itself.

Payloads: on the rows lane ``payload`` is the batch's records already pickled
(:func:`agora.process.transport.encode_rows`; decode with ``decode_rows``), so an
unpicklable record fails in the driver with a clear message before any executor sees
it; on the Arrow lane it is the ``pyarrow.RecordBatch`` itself.

**Executor** — hands out leases. ``None`` on a middleware means a fresh local pool per
run (:class:`PerRunExecutor`); ``agora.WorkerPool`` keeps warm workers across runs and
middlewares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor", "Lease", "LeaseSpec"]

#: Lanes a lease can serve: pickled Python records, or Arrow record batches.
LANES = ("rows", "arrow")


@dataclass(frozen=True)
class LeaseSpec:
    """What one process middleware asks an executor to run, fixed for a whole run."""

    #: The middleware's name; every error and metric of the lease names it.
    name: str
    #: ``"rows"`` (fn(list) -> list) or ``"arrow"`` (fn(RecordBatch) -> RecordBatch).
    lane: str
    #: ``fn`` pickled once by the middleware (protocol 5).
    fn_bytes: bytes
    #: ``(module, qualname)`` of ``fn``, for start-up error messages.
    fn_label: tuple[str, str]
    #: Worker processes serving this lease at a time.
    workers: int
    #: Per-batch limit in seconds, from when the batch reaches a worker; None = none.
    timeout_s: float | None
    #: Consecutive recycles without any batch coming back before the lease is broken.
    max_pool_recycles: int


@runtime_checkable
class Lease(Protocol):
    """One middleware's hold on an executor for one run; see the module doc for the
    rules every implementation keeps. All methods are called on the run's event loop."""

    async def run(self, batch_index: int, payload: Any) -> Any:
        """Run fn on one batch; the result, or ProcessBatchError. Safe to cancel."""
        ...

    async def release(self, grace_s: float) -> None:
        """End the lease: unresolved batches fail; idle workers may be kept warm by the
        executor, busy ones are killed (the run is over: nobody wants their results)."""
        ...

    def kill_now(self) -> None:
        """Synchronously kill whatever of this lease still runs (last-resort cleanup
        after a cancelled ``release``); idempotent."""
        ...

    def worker_pids(self) -> list[int]:
        """PIDs of the live workers currently serving this lease."""
        ...

    @property
    def generation(self) -> int:
        """The current worker generation (+1 per recycle; a warm generation a shared
        pool hands over keeps its number)."""
        ...

    def metrics(self) -> Mapping[str, Any]:
        """JSON-ready counters of this lease (the keys of ``PoolMetrics.as_dict()``)
        plus ``pool_state`` and ``generation``."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Hands out leases; see the module doc."""

    async def acquire(self, spec: LeaseSpec) -> Lease:
        """Return a lease whose workers have all loaded ``spec``'s fn.

        Raises ``WorkerStartupError`` (naming ``spec.name``) when fn cannot be loaded
        or the workers cannot start, leaving no worker behind; ``LifecycleError`` when
        the executor is closed.
        """
        ...
