"""Process-isolated batch middleware: a managed worker pool with recovery semantics.

``middleware.py`` holds the two public classes, ``pool.py`` the worker generations
(dispatch, timeouts, deaths; read its diagram first), ``handles.py`` its records,
``courier.py`` the batches and results it moves, ``workers.py`` the start and retirement
of one worker, ``sampler.py`` its psutil measurements,
``shm.py`` the shared-memory slots (and the reservation that keeps a small ``/dev/shm``
from killing anyone with SIGBUS), ``transport.py`` the codecs and the pipe fallback,
``worker.py`` the worker process, ``startup.py`` and ``forkserver_hook.py`` the
diagnosis of workers that fail to start.
"""

from __future__ import annotations

from agora.process.middleware import ArrowProcessBatchMiddleware, ProcessBatchMiddleware
from agora.errors import ProcessPoolBrokenError, WorkerStartupError

__all__ = [
    "ArrowProcessBatchMiddleware",
    "ProcessBatchMiddleware",
    "ProcessPoolBrokenError",
    "WorkerStartupError",
]
