"""No-orphan and no-leak checks: worker processes and shared-memory slots left behind."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable

import psutil

#: Shared-memory slots are files named ``agora-slot-<creator pid>-<hex>`` in the slot
#: directory: ``$AGORA_SHM_DIR`` when set, else ``/dev/shm`` (or the temp dir where there
#: is no ``/dev/shm``).
SHM_DIR_ENV = "AGORA_SHM_DIR"
_SLOT_NAME = re.compile(r"^agora-slot-(\d+)-[0-9a-f]+$")


def _is_mp_helper(proc: psutil.Process, parent_pid: int) -> bool:
    """True for multiprocessing's session-long helpers (forkserver, resource tracker).

    They are direct children of the test process and live for the whole session by
    design; pool workers are forked *from* the forkserver (grandchildren that inherit its
    command line), which is why only direct children are exempt.
    """
    if proc.ppid() != parent_pid:
        return False
    cmd = " ".join(proc.cmdline())
    return "forkserver" in cmd or "resource_tracker" in cmd


def worker_processes(parent: psutil.Process | None = None) -> list[psutil.Process]:
    """Live descendants of ``parent`` (default: this process), zombies and
    multiprocessing's own helper processes excepted."""
    me = parent if parent is not None else psutil.Process(os.getpid())
    found = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or _is_mp_helper(child, me.pid):
                continue
        except psutil.Error:
            continue  # gone between listing and inspection: not left behind
        found.append(child)
    return found


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid}:{' '.join(proc.cmdline())[:60]}"
    except psutil.Error:
        return f"{proc.pid}:<gone>"


def assert_no_processes_left(
    find: Callable[[], list[psutil.Process]] = worker_processes,
    *,
    grace_s: float = 3.0,
    what: str = "worker processes left behind",
) -> None:
    """Raise ``AssertionError`` naming every process ``find()`` still returns after
    ``grace_s`` seconds (the grace covers reaping by the runtime).

    Stragglers are killed, one pid at a time, before raising, so one leak does not
    poison the next test. Returns as soon as ``find()`` comes back empty.
    """
    deadline = time.monotonic() + grace_s
    while True:
        left = find()
        if not left:
            return
        if time.monotonic() > deadline:
            desc = ", ".join(_describe(p) for p in left)
            for proc in left:
                try:
                    proc.kill()
                except psutil.Error:
                    continue
            raise AssertionError(
                f"{what}: {desc} — every test that starts processes must stop them "
                f"(let the pipeline run finish, or shut the pool down)"
            )
        time.sleep(0.05)  # polling interval while waiting for reaping, not an ordering


def assert_no_worker_processes(grace_s: float = 3.0) -> None:
    """Fail if any worker process of this process outlives the run (see
    :func:`assert_no_processes_left`)."""
    assert_no_processes_left(worker_processes, grace_s=grace_s)


def shm_slot_dir() -> str:
    """The directory that holds shared-memory slots for pools started now."""
    chosen = os.environ.get(SHM_DIR_ENV)
    if chosen:
        return chosen
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def leftover_shm_slots(creator_pid: int | None = None, directory: str | None = None) -> list[str]:
    """Paths of slot files in ``directory`` (default: :func:`shm_slot_dir`), only those
    created by ``creator_pid`` when it is given. A missing directory holds none."""
    directory = directory if directory is not None else shm_slot_dir()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in sorted(names):
        match = _SLOT_NAME.match(name)
        if match and (creator_pid is None or int(match.group(1)) == creator_pid):
            found.append(os.path.join(directory, name))
    return found


def assert_no_shm_slots(creator_pid: int | None = None, directory: str | None = None) -> None:
    """Raise ``AssertionError`` listing the slot files ``creator_pid`` (default: this
    process) left in the slot directory; they are unlinked first so the next test starts
    clean."""
    pid = os.getpid() if creator_pid is None else creator_pid
    left = leftover_shm_slots(pid, directory)
    for path in left:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
    if left:
        raise AssertionError(
            f"shared-memory slots left behind by process {pid}: {left} — a pool must "
            f"release every slot it reserved when it stops"
        )
