"""The local executors: a fresh pool per run (the default) and ``agora.WorkerPool``,
which keeps warm workers for later runs and other middlewares.

Both hand out a :class:`PoolLease` over a :class:`~agora.process.pool.LanePool` — one
worker generation bound to one ``fn`` — so every rule of the process lanes (timeouts,
recycles, re-runs after a death, the recycle budget, cancellation) is the pool's own and
holds the same on either executor.

**fn is shipped per lease, not per batch.** A generation's workers unpickle ``fn`` once,
when they start, and only ever run that ``fn``. A timeout or a death retires a whole
generation and invalidates the batches running beside the guilty one; if two middlewares
shared a generation, one middleware's hung batch would invalidate the other's. So a
``WorkerPool`` shares *generations of the same fn* (same lane, same pickled ``fn``, same
worker count) across runs and middlewares, one lease at a time, and gives a lease with a
different ``fn`` a generation of its own. Every generation, shared or not, is forked from
Agora's zygote (``zygote.py``), which has pyarrow imported already.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from agora.errors import LifecycleError
from agora.process.executor import LANES, Lease, LeaseSpec
from agora.process.handles import Ticket
from agora.process.pool import LanePool
from agora.process.transport import ArrowTransport, RowTransport, Transport

__all__ = ["PerRunExecutor", "PoolLease", "WorkerPool"]

#: How long ``WorkerPool.close()`` lets idle workers exit on their own before killing them.
CLOSE_GRACE_S = 1.0
#: Idle workers a WorkerPool keeps warm, as a multiple of ``max_workers``. Each idle
#: worker costs ~50 MB of RSS; each one kept saves a fork plus loading fn on the next
#: run. Four generations' worth covers a pipeline with a few process middlewares.
IDLE_GENERATIONS = 4

_PoolKey = tuple[str, bytes, int]


def _transport(lane: str) -> Transport:
    if lane not in LANES:
        raise ValueError(f"lane must be one of {LANES}; got {lane!r}")
    return ArrowTransport() if lane == "arrow" else RowTransport()


def _new_pool(spec: LeaseSpec, workers: int) -> LanePool:
    return LanePool(
        name=spec.name,
        transport=_transport(spec.lane),
        fn_bytes=spec.fn_bytes,
        workers=workers,
        timeout_s=spec.timeout_s,
        max_pool_recycles=spec.max_pool_recycles,
        preload=[spec.fn_label[0]],
        fn_label=spec.fn_label,
    )


class PoolLease:
    """A lease over one :class:`LanePool`. On release the pool is stopped, or — when
    ``park`` is given and the pool is idle and healthy — handed to ``park`` to be kept
    warm (a pool with a batch still running is always stopped: the run is over)."""

    def __init__(self, pool: LanePool, park: Callable[[LanePool], None] | None = None) -> None:
        self._pool = pool
        self._park = park
        self._released = False
        self._parked = False
        self._final: dict[str, Any] | None = None

    async def run(self, batch_index: int, payload: Any) -> Any:
        ticket = Ticket(batch_index, payload, asyncio.get_running_loop().create_future())
        self._pool.submit(ticket)
        try:
            return await ticket.future
        except asyncio.CancelledError:
            self._pool.abandon(ticket)
            raise

    async def release(self, grace_s: float) -> None:
        if self._released:
            return
        self._released = True
        pool = self._pool
        if self._park is not None and pool.reusable():
            pool.detach()
            self._final = self._snapshot()
            self._parked = True
            self._park(pool)
            return
        try:
            await pool.stop(grace_s)
        finally:
            pool.kill_now()
            self._final = self._snapshot()

    def kill_now(self) -> None:
        if self._parked:
            return  # idle and warm: the WorkerPool owns it now
        self._released = True
        self._pool.kill_now()
        if self._final is None:
            self._final = self._snapshot()

    def worker_pids(self) -> list[int]:
        return [] if self._released else self._pool.worker_pids()

    @property
    def generation(self) -> int:
        return self._pool.generation

    def metrics(self) -> Mapping[str, Any]:
        if self._final is not None:
            return dict(self._final)
        return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        pool = self._pool
        return {
            **pool.metrics.as_dict(),
            "pool_state": pool.state.value,
            "generation": pool.generation,
            "workers": pool.size,
        }


class PerRunExecutor:
    """The default (``executor=None``): a fresh pool per lease, stopped on release."""

    async def acquire(self, spec: LeaseSpec) -> Lease:
        pool = _new_pool(spec, spec.workers)
        await pool.start()  # kills what it started if it raises
        return PoolLease(pool)


class WorkerPool:
    """Worker processes shared by process middlewares and kept warm across runs.

    ``WorkerPool(max_workers=2)`` can be passed as ``executor=`` to any number of
    ``ProcessBatchMiddleware`` / ``ArrowProcessBatchMiddleware``, in one pipeline or in
    many, run after run. A lease gets ``min(max_workers, the middleware's own worker
    count)`` workers. When a run ends with its workers idle and healthy, they stay
    alive for the next lease of the same ``fn`` (same lane, same worker count), which
    then starts without forking; workers that timed out, died, were busy when the run
    ended or belong to a broken lease are killed, never reused. Different ``fn``\\ s never
    share a worker (see the module doc). Up to ``max_idle_workers`` idle workers are kept
    (default ``4 × max_workers``; the longest idle go first).

    Use it as a context manager, or call :meth:`close` — which kills every idle worker
    (leases still running keep theirs until their run stops them). Idle workers are also
    killed when the pool is garbage-collected and at interpreter exit, and they exit by
    themselves if the driver process dies. A closed pool refuses new leases.
    """

    def __init__(self, max_workers: int = 2, *, max_idle_workers: int | None = None) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"WorkerPool: max_workers must be an int >= 1; got {max_workers!r}")
        if max_idle_workers is not None and (
            isinstance(max_idle_workers, bool)
            or not isinstance(max_idle_workers, int)
            or max_idle_workers < 0
        ):
            raise ValueError(
                "WorkerPool: max_idle_workers must be an int >= 0 (0 keeps no worker warm) "
                f"or None for 4 × max_workers; got {max_idle_workers!r}"
            )
        self.max_workers = max_workers
        self.max_idle_workers = (
            IDLE_GENERATIONS * max_workers if max_idle_workers is None else max_idle_workers
        )
        self._lock = threading.Lock()  # park/take may come from different runs' threads
        self._idle: list[tuple[float, _PoolKey, LanePool]] = []
        self._closed = False
        self.leases = 0
        self.warm_leases = 0
        self._finalizer = weakref.finalize(self, _close_all, self._idle, self._lock)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.idle_workers()} idle workers"
        return f"WorkerPool(max_workers={self.max_workers}, {state})"

    async def acquire(self, spec: LeaseSpec) -> Lease:
        """A lease for ``spec``: a warm generation of the same fn if one is idle, else a
        fresh one forked from the zygote. Raises LifecycleError once closed."""
        if self._closed:
            raise LifecycleError(
                f"process middleware {spec.name!r}: its WorkerPool is closed; create a new "
                "WorkerPool (or pass executor=None) for this run"
            )
        workers = min(spec.workers, self.max_workers)
        key: _PoolKey = (spec.lane, spec.fn_bytes, workers)
        self.leases += 1
        while (pool := self._take(key)) is not None:
            if pool.reusable():  # a worker may have died while it was parked
                pool.attach(
                    name=spec.name, timeout_s=spec.timeout_s,
                    max_pool_recycles=spec.max_pool_recycles,
                )
                self.warm_leases += 1
                return PoolLease(pool, self._put)
            pool.close_parked(0.0)
        pool = _new_pool(spec, workers)
        await pool.start()
        return PoolLease(pool, self._put)

    def idle_workers(self) -> int:
        """Worker processes kept warm right now."""
        with self._lock:
            return sum(pool.size for _, _, pool in self._idle)

    def idle_pids(self) -> list[int]:
        """PIDs of the idle workers kept warm right now."""
        with self._lock:
            return [pid for _, _, pool in self._idle for pid in pool.worker_pids()]

    def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Kill every idle worker (idle ones get ``grace_s`` to exit cleanly) and refuse
        new leases. Idempotent. Leases in use are unaffected until their run ends; their
        workers are then stopped instead of kept."""
        self._closed = True
        _close_all(self._idle, self._lock, grace_s)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _take(self, key: _PoolKey) -> LanePool | None:
        with self._lock:
            for index, (_, pool_key, pool) in enumerate(self._idle):
                if pool_key == key:
                    del self._idle[index]
                    return pool
        return None

    def _put(self, pool: LanePool) -> None:
        """Keep a released, detached pool warm — unless closed or over the idle budget."""
        evicted: list[LanePool] = []
        with self._lock:
            if self._closed or pool.size > self.max_idle_workers:
                evicted.append(pool)
            else:
                key: _PoolKey = (pool.transport.lane, pool.fn_bytes, pool.size)
                self._idle.append((time.monotonic(), key, pool))
                while sum(p.size for _, _, p in self._idle) > self.max_idle_workers:
                    evicted.append(self._idle.pop(0)[2])
        for old in evicted:
            old.close_parked(CLOSE_GRACE_S)


def _close_all(
    idle: list[tuple[float, _PoolKey, LanePool]], lock: threading.Lock,
    grace_s: float = 0.0,
) -> None:
    with lock:
        pools = [pool for _, _, pool in idle]
        idle.clear()
    for pool in pools:
        pool.close_parked(grace_s)
