"""``DaskExecutor``: the process lanes' batches run on a Dask distributed cluster.

The executor holds the cluster (one it started, or one it was pointed at); each run of a
process middleware opens a :class:`~agora.process._dask_lane.DaskLane` on it with its
own asynchronous client on the run's event loop. Checkpoints, the DLQ and sinks stay in
the driver, exactly as with the local pool: the cluster only runs ``fn``.

``distributed`` is an optional dependency (``pip install 'agora[dask]'``): this module
imports it only when an executor is built.
"""

from __future__ import annotations

import importlib
import threading
from enum import StrEnum
from types import ModuleType, TracebackType
from typing import Any

from agora.errors import LifecycleError, WorkerStartupError
from agora.process._dask_lane import DaskLease
from agora.process._dask_task import load_fn
from agora.process.executor import LeaseSpec

__all__ = ["DaskExecutor", "DaskExecutorState", "require_distributed"]

#: Worker deaths Dask absorbs by re-running a batch on its own, on a cluster the executor
#: starts: none — the lease re-runs a batch whose worker died *alone*, so an innocent
#: batch that shared a worker with the culprit is never charged twice. A cluster we are
#: pointed at keeps its own ``distributed.scheduler.allowed-failures`` (Dask's default 3).
OWNED_ALLOWED_FAILURES = 0

#: How long connecting to a scheduler address may take before the executor gives up.
CONNECT_TIMEOUT_S = 10.0

#: Batches a lease keeps per worker thread: one running and one queued behind it, so a
#: worker never idles for a scheduler round trip between batches. More would only
#: lengthen queues and widen what one worker's death takes with it.
BATCHES_PER_THREAD = 2

#: How long a new lease waits for the cluster's workers (a worker restarted after a
#: timeout is back within about a second here; a remote one may take longer).
WORKER_WAIT_S = 30.0

_MISSING = (
    "DaskExecutor needs the 'distributed' package, which is not installed; install the "
    "optional extra with: pip install 'agora[dask]'"
)


def require_distributed() -> ModuleType:
    """Import ``distributed``, or raise ``ImportError`` naming the extra to install."""
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise ImportError(_MISSING) from exc


def _local_cluster_class(distributed: ModuleType) -> type[Any]:
    """``LocalCluster`` that never retires a nanny whose worker went away.

    A plain ``LocalCluster`` closes a worker's nanny for good when, 15 s after the worker
    left, no worker of that name is registered (``lost-worker-timeout``). Our nannies
    restart their workers after every timeout, so a later restart of the same worker that
    happens to be under way at that instant would cost the cluster a worker forever
    (seen in tests: a lease then waits for a worker that never comes). The nanny's own
    supervision is all this cluster needs.
    """
    from distributed.deploy.cluster import Cluster

    class _NannyKeepingCluster(distributed.LocalCluster):  # type: ignore[misc, name-defined]
        def _update_worker_status(self, op: str, msg: Any) -> None:
            # distributed leaves this hook unannotated; the override keeps its signature.
            Cluster._update_worker_status(self, op, msg)  # type: ignore[no-untyped-call]

    return _NannyKeepingCluster


class DaskExecutorState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class DaskExecutor:
    """Runs process-lane batches on a Dask cluster.

    ``address=None`` starts a ``LocalCluster`` of ``n_workers`` worker processes with
    one thread each, owned by the executor: :meth:`close` (or leaving the ``with``
    block) shuts it down and leaves no scheduler or worker process behind. An address
    string (``"tcp://host:8786"``) or a ``distributed.Client`` uses an existing cluster,
    which the executor never closes. Workers must be able to import ``agora`` and
    ``fn``'s module.

    Raises ``ImportError`` naming ``agora[dask]`` when ``distributed`` is missing,
    ``ConnectionError`` when no scheduler answers at ``address`` within
    ``CONNECT_TIMEOUT_S``, and ``ValueError``/``TypeError`` for bad arguments.
    """

    def __init__(
        self,
        address: str | Any | None = None,
        *,
        n_workers: int = 2,
        memory_limit: str | int | None = "auto",
    ) -> None:
        distributed = require_distributed()
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"DaskExecutor: n_workers must be an int >= 1; got {n_workers!r}")
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._client: Any = None  # a synchronous client, for addresses and introspection
        self._owns_client = False
        if address is None:
            import dask

            with dask.config.set({"distributed.scheduler.allowed-failures":
                                  OWNED_ALLOWED_FAILURES}):
                self._cluster = _local_cluster_class(distributed)(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    # A free port: a fixed one clashes with any other cluster on the host.
                    dashboard_address=":0",
                    memory_limit=memory_limit,
                )
            try:
                self._client = distributed.Client(self._cluster, set_as_default=False)
            except BaseException:
                self._cluster.close()
                raise
            self._owns_client = True
        elif isinstance(address, distributed.Client):
            self._client = address
        elif isinstance(address, str) and address:
            try:
                self._client = distributed.Client(address, set_as_default=False,
                                                  timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(
                    f"DaskExecutor: cannot reach a Dask scheduler at {address!r} within "
                    f"{CONNECT_TIMEOUT_S:g} s ({type(exc).__name__}: {exc}); check the "
                    "address and that the scheduler is running (dask scheduler)"
                ) from exc
            self._owns_client = True
        else:
            raise TypeError(
                "DaskExecutor: address must be None (start a local cluster), a scheduler "
                f"address string such as 'tcp://host:8786', or a distributed.Client; got "
                f"{address!r}"
            )
        self.n_workers = n_workers
        self.state = DaskExecutorState.OPEN

    @property
    def owns_cluster(self) -> bool:
        """True when the executor started the cluster (and so closes it)."""
        return self._cluster is not None

    @property
    def scheduler_address(self) -> str:
        return str(self._client.scheduler.address)

    @property
    def client(self) -> Any:
        """The executor's synchronous ``distributed.Client`` (for introspection)."""
        return self._client

    def worker_addresses(self) -> list[str]:
        """Addresses of the cluster's workers right now."""
        return sorted(self._client.scheduler_info(n_workers=-1)["workers"])

    async def acquire(self, spec: LeaseSpec) -> DaskLease:
        """A lease for one run of ``spec``'s middleware, once every worker has loaded
        its ``fn``; it holds its own asynchronous client on the running event loop.

        Raises ``WorkerStartupError`` naming the middleware when a worker cannot load
        ``fn`` or the cluster has no worker within ``WORKER_WAIT_S``, ``LifecycleError``
        once the executor is closed.
        """
        if self.state is DaskExecutorState.CLOSED:
            raise LifecycleError(f"process middleware {spec.name!r}: its DaskExecutor is "
                                 "closed; create a new DaskExecutor for this run")
        distributed = require_distributed()
        client = await distributed.Client(
            self.scheduler_address, asynchronous=True, set_as_default=False
        )
        try:
            # A worker restarted after a timeout or a cancellation may still be coming
            # back: wait for all of ours, or for any worker on a cluster we were given.
            wanted = self.n_workers if self.owns_cluster else 1
            try:
                await client.wait_for_workers(wanted, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise WorkerStartupError(
                    f"process middleware {spec.name!r}: the Dask cluster at "
                    f"{self.scheduler_address} has fewer than {wanted} worker(s) after "
                    f"{WORKER_WAIT_S:g} s; start workers (dask worker <address>) or use "
                    "DaskExecutor() for a local cluster"
                ) from None
            nthreads: dict[str, int] = await client.nthreads()
            loaded = await client.run(load_fn, spec.fn_bytes, on_error="return")
            failed = {addr: exc for addr, exc in loaded.items() if isinstance(exc, Exception)}
            if failed:
                addr, exc = next(iter(failed.items()))
                module, qualname = spec.fn_label
                raise WorkerStartupError(
                    f"process middleware {spec.name!r}: Dask worker {addr} cannot load fn "
                    f"{module}.{qualname} ({type(exc).__name__}: {exc}); install fn's "
                    "module (and agora) on every worker of the cluster"
                ) from exc
        except BaseException:
            await client.close()
            raise
        # Two batches per worker thread (one running, one queued behind it), for as
        # many threads as the middleware's own worker count (``max_workers``, capped by
        # ``max_in_flight_batches``) allows.
        slots = BATCHES_PER_THREAD * max(1, min(spec.workers, sum(nthreads.values())))
        return DaskLease(
            client, name=spec.name, lane=spec.lane, fn_bytes=spec.fn_bytes,
            timeout_s=spec.timeout_s, max_pool_recycles=spec.max_pool_recycles,
            slots=slots, worker_pids={a: p for a, p in loaded.items() if isinstance(p, int)},
        )

    def close(self) -> None:
        """Disconnect; shut the cluster down if this executor started it. Idempotent."""
        with self._lock:
            if self.state is DaskExecutorState.CLOSED:
                return
            self.state = DaskExecutorState.CLOSED
        try:
            if self._owns_client:
                self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "local cluster" if self.owns_cluster else "cluster"
        return f"<DaskExecutor {self.state.value} {where} at {self.scheduler_address}>"
