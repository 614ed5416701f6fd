"""Shared benchmark plumbing: a psutil sampler for the process tree and a leftover check.

Used by ``bench/conftest.py`` (the pytest-benchmark suite), ``bench/bench_scaling.py`` and the
process-lane benchmark (``tree_cpu_s``, the CPU its gate judges).
Process checks come from :mod:`agora.testing` (stdlib, psutil and the agora facade only).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from agora.testing import assert_no_processes_left, worker_processes

MIB = 1 << 20


def assert_no_workers_left(grace_s: float = 3.0) -> None:
    """Raise ``AssertionError`` naming every worker that outlived its benchmark (after a
    short grace for reaping; stragglers are killed first so one leak does not poison the
    next benchmark's figures)."""
    assert_no_processes_left(worker_processes, grace_s=grace_s,
                             what="worker processes outlived the benchmark")


def _cpu(times: Any) -> float:
    return float(times.user + times.system)


@dataclass
class TreeFigures:
    """What one :class:`ProcessTreeSampler` window saw. RSS counts copy-on-write and shared
    pages in every process that maps them, so the sums are upper bounds."""

    main_peak_rss_bytes: int = 0
    workers_peak_rss_bytes: int = 0  # peak of the per-sample sum over worker processes
    total_peak_rss_bytes: int = 0  # peak of main + workers, summed in the same sample
    main_start_rss_bytes: int = 0
    main_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    workers_seen: int = 0
    samples: int = 0
    wall_s: float = 0.0
    worker_pids: set[int] = field(default_factory=set)

    def as_dict(self, per: int = 1) -> dict[str, float | int]:
        """JSON-ready figures in MiB and seconds; CPU is divided by ``per`` (e.g. rounds)."""
        per = max(1, per)
        return {
            "main_peak_rss_mb": round(self.main_peak_rss_bytes / MIB, 1),
            "main_start_rss_mb": round(self.main_start_rss_bytes / MIB, 1),
            "workers_peak_rss_mb": round(self.workers_peak_rss_bytes / MIB, 1),
            "total_peak_rss_mb": round(self.total_peak_rss_bytes / MIB, 1),
            "main_cpu_s": round(self.main_cpu_s / per, 4),
            "workers_cpu_s": round(self.workers_cpu_s / per, 4),
            "workers_seen": self.workers_seen,
            "samples": self.samples,
        }


class ProcessTreeSampler:
    """Samples RSS and CPU of this process and its workers every ``interval_s`` in a thread.

    Worker CPU is each worker's user+system time at its last sample, less its time when the
    window opened if it was already alive; a worker that exits between two samples loses
    at most ``interval_s`` of CPU (the figures are approximate by that much per worker).
    Use as a context manager; read ``figures`` after it exits.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.figures = TreeFigures()
        self._me = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_cpu: dict[int, float] = {}
        self._last_cpu: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._started = 0.0
        self._main_cpu0 = 0.0

    def __enter__(self) -> ProcessTreeSampler:
        self._started = time.perf_counter()
        self._main_cpu0 = _cpu(self._me.cpu_times())
        self.figures.main_start_rss_bytes = self._me.memory_info().rss
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        fig = self.figures
        fig.wall_s = time.perf_counter() - self._started
        fig.main_cpu_s = _cpu(self._me.cpu_times()) - self._main_cpu0
        fig.workers_cpu_s = sum(self._last_cpu[p] - self._first_cpu[p] for p in self._last_cpu)
        fig.workers_seen = len(self._first_cpu)
        fig.worker_pids = set(self._first_cpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self, initial: bool = False) -> None:
        fig = self.figures
        try:
            main_rss = self._me.memory_info().rss
        except psutil.Error:
            return
        workers_rss = 0
        for proc in worker_processes(self._me):
            # Reuse Process objects: psutil tells a recycled pid from the same process by
            # its creation time only on a kept object.
            proc = self._procs.setdefault(proc.pid, proc)
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = _cpu(proc.cpu_times())
            except psutil.Error:
                continue
            workers_rss += rss
            # A worker born inside the window spent all its CPU here (a forked child's
            # times start at zero); one alive before it counts from the first sample.
            self._first_cpu.setdefault(proc.pid, cpu if initial else 0.0)
            self._last_cpu[proc.pid] = cpu
        fig.samples += 1
        fig.main_peak_rss_bytes = max(fig.main_peak_rss_bytes, main_rss)
        fig.workers_peak_rss_bytes = max(fig.workers_peak_rss_bytes, workers_rss)
        fig.total_peak_rss_bytes = max(fig.total_peak_rss_bytes, main_rss + workers_rss)


def process_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of one live process (all its threads, exited ones included) plus those
    of its reaped children.

    On Linux a process's own time comes from its CPU-time clock (nanoseconds; the clock id
    of process ``pid`` is ``(~pid << 3) | 2``, the kernel's process clock on the scheduler's
    runtime): psutil's ``cpu_times`` counts in 10 ms ticks, too coarse for passes of a few
    tens of milliseconds. Reaped children only exist as ticks.
    """
    times = proc.cpu_times()
    own = times.user + times.system
    if sys.platform == "linux":
        try:
            own = time.clock_gettime_ns((~proc.pid << 3) | 2) / 1e9
        except OSError:  # the process is gone: keep psutil's figure
            pass
    return float(own + times.children_user + times.children_system)


def tree_cpu_s(root: psutil.Process | None = None) -> float:
    """CPU seconds of ``root`` (this process by default) and every descendant, including
    descendants already reaped (their time is in their parent's ``children_*``).

    Differences of two readings are the CPU a benchmark pass cost the whole process tree:
    far less sensitive to other processes on a shared machine than wall time, because
    waiting for a core costs no CPU. Processes that exit unreaped between two readings are
    lost, which the pools measured here never do.
    """
    me = root or psutil.Process()
    total = process_cpu_s(me)
    for child in me.children(recursive=True):
        try:
            total += process_cpu_s(child)
        except psutil.Error:  # exited between the listing and the reading
            continue
    return total
