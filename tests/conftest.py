"""Shared fixtures for the unit tests."""

from __future__ import annotations

import os
import time

import psutil
import pytest


def leftover_worker_processes() -> list[psutil.Process]:
    """Descendants of this test process other than multiprocessing's own helpers.

    The forkserver and the resource tracker are direct children that live for the whole
    session by design; everything else (pool workers are forked from the forkserver, so
    they are grandchildren) must be gone after a run.
    """
    me = psutil.Process(os.getpid())
    leftovers = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if child.ppid() == me.pid:
                cmd = " ".join(child.cmdline())
                if "forkserver" in cmd or "resource_tracker" in cmd:
                    continue
            leftovers.append(child)
        except psutil.NoSuchProcess:
            continue
    return leftovers


def assert_no_worker_processes(grace_s: float = 3.0) -> None:
    """Fail if any worker process outlives the run (after a short grace for reaping)."""
    deadline = time.monotonic() + grace_s
    while True:
        left = leftover_worker_processes()
        if not left:
            return
        if time.monotonic() > deadline:
            desc = ", ".join(f"{p.pid}:{' '.join(p.cmdline())[:60]}" for p in left)
            for p in left:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            raise AssertionError(f"worker processes left behind: {desc}")
        time.sleep(0.05)


@pytest.fixture
def no_orphans():
    """Use in every test that starts processes: asserts none is left afterwards."""
    yield
    assert_no_worker_processes()
