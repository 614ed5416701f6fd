"""Agora's own forkserver (the *zygote*): every worker is forked from a process that has
already imported pyarrow, whatever else the driver did with multiprocessing.

multiprocessing has one forkserver per process, and its preload list only applies if
whoever starts it first sets it. When something else (a ``ProcessPoolExecutor`` on the
``forkserver`` context, a library) got there first, workers forked from it would import
pyarrow again — ~200 ms per worker, on every run and every recycle. So Agora keeps a
private :class:`multiprocessing.forkserver.ForkServer` *instance*, reached through a
context of its own (:class:`ZygoteContext`); the interpreter's shared forkserver is
never touched, and never touches us.

Life cycle: the zygote starts at the first worker start of the process, with the preload
list set by :func:`zygote_context` up to then (``PRELOAD`` plus the first lane's ``fn``
module), and serves every pool of the process afterwards. It holds no data. It exits by
itself once the driver and every worker are gone; :func:`stop_zygote` (registered with
``atexit``) stops it at interpreter exit, killing it if it lingers — which also kills
any worker still alive (workers die with their parent, see ``worker.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import multiprocessing
import multiprocessing.forkserver as mp_forkserver
import multiprocessing.popen_forkserver as mp_popen_forkserver
import os
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing import process as mp_process
from multiprocessing import reduction, spawn, util
from multiprocessing.context import BaseContext, set_spawning_popen
from typing import Any

__all__ = [
    "ZygoteContext",
    "stop_zygote",
    "zygote_context",
    "zygote_pid",
    "zygote_preload",
    "await_zygote_exit",
]

#: Modules every worker has imported before it is forked, so a new worker (and a new
#: generation after a recycle) is ready in milliseconds instead of re-importing pyarrow.
#: ``forkserver_hook`` comes first so that it also captures a later module's failure;
#: ``census`` comes last so that it sees everything the zygote preloaded.
PRELOAD = [
    "agora.process.forkserver_hook", "pyarrow", "pyarrow.ipc", "ctypes",
    "agora.process.worker", "agora.process.zygote", "agora.process.census",
]

#: How long :func:`stop_zygote` waits for the zygote to exit on its own before killing it.
STOP_GRACE_S = 1.0

class _ZygoteServer(mp_forkserver.ForkServer):
    """multiprocessing's ForkServer, with the private state it keeps (and this module
    reads to report and stop it) declared for the type checker."""

    _lock: threading.Lock
    _preload_modules: list[str]
    _forkserver_pid: int | None
    _forkserver_alive_fd: int | None
    _forkserver_address: str | None


_ZYGOTE = _ZygoteServer()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _ZygotePopen(mp_popen_forkserver.Popen):
    """Starts one process by asking *our* zygote, not the interpreter's forkserver, to
    fork it. Everything else (fd passing, exit status) is the forkserver protocol."""

    _fds: list[int]

    def _launch(self, process_obj: Any) -> None:
        # The child unpickles these two objects; fds referenced while pickling them are
        # collected by duplicate_for_child() and handed over with the fork request.
        payload = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(spawn.get_preparation_data(process_obj._name), payload)
            reduction.dump(process_obj, payload)
        finally:
            set_spawning_popen(None)
        status_r, data_w = _ZYGOTE.connect_to_new_process(self._fds)
        self.sentinel = status_r
        # The child treats the end of this pipe as the parent being gone; hold a copy of
        # it for as long as this Popen lives.
        keep_alive = os.dup(data_w)
        self.finalizer = util.Finalize(self, _close_fds, (keep_alive, status_r))
        with open(data_w, "wb", closefd=True) as stream:
            stream.write(payload.getbuffer())
        self.pid = mp_forkserver.read_signed(status_r)


class ZygoteProcess(mp_process.BaseProcess):
    """A ``Process`` forked from Agora's zygote."""

    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: Any) -> _ZygotePopen:
        return _ZygotePopen(process_obj)


class ZygoteContext(BaseContext):
    """A multiprocessing context whose processes come from Agora's zygote."""

    _name = "forkserver"
    Process = ZygoteProcess


_CONTEXT = ZygoteContext()


def available() -> bool:
    """Whether this platform can run a forkserver (passing fds over a Unix socket)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def zygote_context(
    extra_preload: Sequence[str] = (), *, drop: Sequence[str] = ()
) -> BaseContext:
    """The context that starts workers from the zygote (``spawn`` where no forkserver
    exists).

    ``extra_preload`` (the module defining ``fn``) joins the preload list so that workers
    of every generation start with it imported; modules in ``drop`` leave it (used to
    retry without a module whose import killed the zygote). The list takes effect when
    the zygote (re)starts; a running zygote keeps the list it started with.
    """
    if not available():
        return multiprocessing.get_context("spawn")
    wanted = [
        m for m in (*PRELOAD, *zygote_preload(), *extra_preload)
        if m and m != "__main__" and m not in drop
    ]
    _ZYGOTE.set_forkserver_preload(list(dict.fromkeys(wanted)))
    return _CONTEXT


def zygote_preload() -> list[str]:
    """The preload list the zygote has (or will start with)."""
    return [m for m in _ZYGOTE._preload_modules if m != "__main__"]


def zygote_pid() -> int | None:
    """The zygote's pid, if it was started."""
    pid = _ZYGOTE._forkserver_pid
    return pid if isinstance(pid, int) else None


def await_zygote_exit(limit_s: float = 2.0) -> None:
    """Wait (briefly) until a zygote that hung up can be reaped, so that the next process
    start launches a new one instead of talking to the dying one. It is not reaped here
    (``WNOWAIT``): ``ensure_running`` reaps it and then starts the new one."""
    pid = zygote_pid()
    deadline = time.monotonic() + limit_s
    while pid is not None and time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)


def stop_zygote(grace_s: float = STOP_GRACE_S) -> None:
    """Stop the zygote: hang up on it, wait up to ``grace_s`` for it to exit, then kill
    it (its workers die with it). Idempotent; the next worker start launches a new one."""
    server = _ZYGOTE
    with server._lock:
        pid = server._forkserver_pid
        if pid is None:
            return
        if server._forkserver_alive_fd is not None:
            with contextlib.suppress(OSError):
                os.close(server._forkserver_alive_fd)
        deadline = time.monotonic() + grace_s
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break  # already reaped
            if done:
                break
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        address = server._forkserver_address
        if address and not util.is_abstract_socket_namespace(address):
            with contextlib.suppress(OSError):
                os.unlink(address)
        server._forkserver_pid = None
        server._forkserver_alive_fd = None
        server._forkserver_address = None


atexit.register(stop_zygote)
