"""What a Dask worker runs: load ``fn`` once, then call it on one batch at a time.

This module is imported on the cluster's workers (tasks reference it by name), so it
imports neither ``distributed`` nor anything of Agora beyond the standard library and
pyarrow: a worker needs only ``agora`` and ``fn``'s module installed.

Row batches cross as pickles (protocol 5). Arrow batches cross as ``RecordBatch``
objects in Dask's own serialisation (pickle protocol 5 with out-of-band buffers going in,
Dask's Arrow IPC serialiser for results; a slice is compacted by the driver first). That
was measured faster than shipping our own IPC bytes (``bench/bench_dask.py``; figures in
``docs/executors-dask.md``).
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from typing import Any


__all__ = ["BatchExit", "load_fn", "run_batch"]

_PICKLE_PROTOCOL = 5


@functools.lru_cache(maxsize=64)
def _load_fn(fn_bytes: bytes) -> Callable[[Any], Any]:
    # A worker serves many batches of the same fn: unpickle it (and import its module)
    # once per worker process, not once per batch.
    fn: Callable[[Any], Any] = pickle.loads(fn_bytes)
    return fn


def load_fn(fn_bytes: bytes) -> int:
    """Load ``fn`` in this worker (importing its module) and return the worker's pid;
    raises what unpickling raised, for the driver's start-up error."""
    _load_fn(fn_bytes)
    return os.getpid()


class BatchExit(RuntimeError):
    """``fn`` raised ``SystemExit`` / ``KeyboardInterrupt``: a failure of this batch,
    not a reason for the Dask worker thread to stop."""


def run_batch(fn_bytes: bytes, lane: str, payload: Any, topic: str | None = None,
              key: str = "") -> Any:
    """Run ``fn`` on one batch and return its result, ready for the trip back.

    ``lane`` is ``"rows"`` (payload is a pickle; returns ``(input length, pickled
    result)``) or ``"arrow"`` (payload is a ``RecordBatch``; the result is returned as
    ``fn`` gave it and checked by the driver).
    Exceptions of ``fn`` propagate: Dask carries them back with their traceback.

    With a ``topic``, the worker first reports ``key`` on it: the driver's timeout clock
    starts when the batch starts here, not while it waits in the worker's queue.
    """
    fn = _load_fn(fn_bytes)
    if topic is not None:
        from distributed import get_worker

        get_worker().log_event(topic, {"key": key})
    try:
        if lane == "rows":
            records = pickle.loads(payload)
            result = fn(records)
            # Pickled here, so an unpicklable result fails as this batch's error; the
            # input count travels back so the driver checks the length without
            # unpickling the batch a second time.
            return len(records), pickle.dumps(result, protocol=_PICKLE_PROTOCOL)
        return fn(payload)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise BatchExit(f"fn raised {type(exc).__name__}({exc})") from None
