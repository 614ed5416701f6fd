"""Process-isolated batch middleware: a managed worker pool with recovery semantics.

``middleware.py`` holds the two public classes, ``pool.py`` the worker generations
(dispatch, timeouts, deaths; read its diagram first), ``handles.py`` its records,
``courier.py`` the batches and results it moves, ``workers.py`` the start and retirement
of one worker, ``sampler.py`` its psutil measurements,
``shm.py`` the shared-memory slots (and the reservation that keeps a small ``/dev/shm``
from killing anyone with SIGBUS), ``transport.py`` the codecs and the pipe fallback,
``worker.py`` the worker process, ``startup.py`` and ``forkserver_hook.py`` the
diagnosis of workers that fail to start. ``executor.py`` is the seam a lane runs ``fn``
through (``Executor`` → ``Lease``); ``executors.py`` the two local executors (a pool per
run, and the shared ``WorkerPool``); ``zygote.py`` the private forkserver every worker is
forked from, with pyarrow preloaded (``census.py`` records what workers inherit).
``dask_executor.py`` runs the same leases on a Dask distributed cluster (optional extra
``agora[dask]``; ``_dask_lane.py``, ``_dask_ops.py`` and ``_dask_task.py`` are its parts).
"""

from __future__ import annotations

from agora.errors import ProcessPoolBrokenError, WorkerStartupError
from agora.process.executor import Executor, Lease, LeaseSpec
from agora.process.executors import WorkerPool
from agora.process.middleware import ArrowProcessBatchMiddleware, ProcessBatchMiddleware

__all__ = [
    "ArrowProcessBatchMiddleware",
    "Executor",
    "Lease",
    "LeaseSpec",
    "ProcessBatchMiddleware",
    "ProcessPoolBrokenError",
    "WorkerPool",
    "WorkerStartupError",
]
