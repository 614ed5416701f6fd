"""Worker-side fault injectors: picklable transforms that sleep, drop, raise, shorten
their result, or kill the worker process running them — each says what fails and when.

Records are identified by their ``id`` field (an int, or its text form when a CSV source
read it), so a fault can target records however the lane carries them: a dict, a
``list[dict]`` or a ``pyarrow.RecordBatch``. Targets are record ids (``ids=``) or batch
numbers of a fixed-size batching (``batch=``, ``batch_size=``). They are top-level
classes of an importable module, so a process pool can unpickle them by reference.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

class InjectedFault(RuntimeError):
    """Raised by every injector in :mod:`agora.testing`, so a test can tell an injected
    failure from a real one."""


# -- record identity ----------------------------------------------------------------------


def record_ids(data: Any) -> list[int]:
    """The ``id`` of every record in ``data`` (a dict, a list of dicts, or a RecordBatch)."""
    if isinstance(data, pa.RecordBatch):
        return [int(v) for v in data.column("id").to_pylist()]
    if isinstance(data, dict):
        return [int(data["id"])]
    return [int(r["id"]) for r in data]


def _batch_keys(batch: int | Collection[int]) -> frozenset[int]:
    return frozenset([batch] if isinstance(batch, int) else batch)


class _Trigger:
    """Fires on a batch holding one of ``ids``, or whose first id // ``batch_size`` is in
    ``batch`` (batches of a fixed size, numbered from 0 in source order)."""

    def __init__(self, *, ids: Iterable[int] = (), batch: int | Collection[int] = (),
                 batch_size: int | None = None) -> None:
        self.ids = frozenset(ids)
        self.batches = _batch_keys(batch)
        if self.batches and not batch_size:
            raise ValueError(f"{type(self).__name__}: batch_size must be a positive int when "
                             f"batch= is given; got {batch_size!r} — pass batch_size=<rows>")
        self.batch_size = batch_size or 1

    def fires(self, data: Any) -> bool:
        ids = record_ids(data)
        if not ids:
            return False
        if self.batches and ids[0] // self.batch_size in self.batches:
            return True
        return not self.ids.isdisjoint(ids)

    def __repr__(self) -> str:
        what = f"batch={sorted(self.batches)}" if self.batches else f"ids={sorted(self.ids)}"
        return f"{type(self).__name__}({what})"


# -- worker-side transforms (picklable; run by process-isolated middleware) ---------------


class Identity:
    """Returns its input unchanged (rows or an Arrow batch)."""

    def __call__(self, data: Any) -> Any:
        return data


class Chain:
    """Applies several transforms in order: ``Chain(KillWorkerOn(...), SleepyTransform(...))``."""

    def __init__(self, *steps: Any) -> None:
        self.steps = steps

    def __call__(self, data: Any) -> Any:
        for step in self.steps:
            data = step(data)
        return data

    def __repr__(self) -> str:
        return f"Chain{self.steps!r}"


class SleepyTransform(_Trigger):
    """Sleeps ``seconds`` on the batches it fires on (all batches if no target is given),
    then returns the input. With ``log_dir`` it writes ``started-<first id>`` when it
    starts and appends ``<first id>`` to ``done.log`` when it returns, so a test can see
    which batch a worker was in and in which order batches really finished."""

    def __init__(self, seconds: float, *, log_dir: str | os.PathLike[str] | None = None,
                 **target: Any) -> None:
        super().__init__(**target)
        self.seconds = seconds
        self.everywhere = not self.ids and not self.batches
        self.log_dir = None if log_dir is None else os.fspath(log_dir)

    def __call__(self, data: Any) -> Any:
        ids = record_ids(data)
        first = ids[0] if ids else -1
        if self.log_dir is not None:
            Path(self.log_dir, f"started-{first}").touch()
        if self.everywhere or self.fires(data):
            time.sleep(self.seconds)
        if self.log_dir is not None:
            fd = os.open(Path(self.log_dir, "done.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, f"{first}\n".encode())
            finally:
                os.close(fd)
        return data


class WaitForFile(_Trigger):
    """Waits, on the batches it fires on, until ``path`` exists — e.g. the ``killed-<id>``
    marker of a :class:`KillWorkerOn` with ``once_dir`` — then returns the input. It
    orders worker-side events across processes without sleeping: a poison batch chained
    after ``WaitForFile(once_dir / "killed-0", batch=2, ...)`` cannot break the pool
    before batch 0 has made its own first attempt. Raises :class:`InjectedFault` if the
    file has not appeared after ``timeout_s`` seconds, so a broken ordering fails loudly
    instead of hanging."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 10.0,
                 **target: Any) -> None:
        super().__init__(**target)
        self.path = os.fspath(path)
        self.timeout_s = timeout_s

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            deadline = time.monotonic() + self.timeout_s
            while not os.path.exists(self.path):
                if time.monotonic() > deadline:
                    raise InjectedFault(f"WaitForFile: {self.path} did not appear within "
                                        f"{self.timeout_s} s (ids {record_ids(data)[:3]}...)")
                time.sleep(0.005)
        return data


class DropOn(_Trigger):
    """A row-lane batch function that drops (returns None for) the records in ``ids``."""

    def __call__(self, data: Any) -> Any:
        return [None if int(r["id"]) in self.ids else r for r in data]


class ShortResultOn(_Trigger):
    """Returns one record (or Arrow row) too few for the batches it fires on — a contract
    breach the runtime must treat as that batch's failure."""

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            return data.slice(1) if isinstance(data, pa.RecordBatch) else list(data)[1:]
        return data


class KillWorkerOn(_Trigger):
    """SIGKILLs the worker process on the batches it fires on.

    ``once_dir`` set: only the first attempt dies (an ``O_EXCL`` marker file per batch
    remembers it across processes), so the batch succeeds when re-run — an innocent
    bystander of a pool break. ``once_dir`` unset: it dies every time — a poison batch.
    """

    def __init__(self, *, once_dir: str | os.PathLike[str] | None = None, **target: Any) -> None:
        super().__init__(**target)
        self.once_dir = None if once_dir is None else os.fspath(once_dir)

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            if self.once_dir is None or _first_time(self.once_dir, record_ids(data)[0]):
                os.kill(os.getpid(), signal.SIGKILL)
        return data


def _first_time(directory: str, key: int) -> bool:
    try:
        os.close(os.open(Path(directory, f"killed-{key}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class SegfaultOn(_Trigger):
    """Crashes the worker with a real SIGSEGV on the batches it fires on, every time."""

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            faulthandler.disable()  # die by the signal itself, without a traceback dump
            # typeshed leaves out this private CPython test hook; it is the only portable
            # way to raise a genuine segmentation fault from Python.
            faulthandler._sigsegv()  # type: ignore[attr-defined]
        return data


class ExitWorkerOn(_Trigger):
    """Ends the worker with ``os._exit(code)`` on the batches it fires on, every time."""

    def __init__(self, code: int = 3, **target: Any) -> None:
        super().__init__(**target)
        self.code = code

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            os._exit(self.code)
        return data


class RaiseOn(_Trigger):
    """Raises ``InjectedFault(message)`` on the batches (or records) it fires on.

    Used as a batch function it fails the whole batch; used per record (``MapMiddleware``)
    it fails that record only."""

    def __init__(self, message: str = "injected failure", **target: Any) -> None:
        super().__init__(**target)
        self.message = message

    def __call__(self, data: Any) -> Any:
        if self.fires(data):
            raise InjectedFault(f"{self.message} (ids {record_ids(data)[:3]}...)")
        return data
