"""Sampling the pool's worker processes (peak RSS, CPU time) with psutil for the run summary."""

from __future__ import annotations

from collections.abc import Iterable

import psutil

from agora.process.handles import PoolMetrics, WorkerHandle

__all__ = ["SAMPLE_INTERVAL_S", "WorkerSampler"]

#: psutil sampling period for worker RSS/CPU: cheap (~50 us per worker) and fine enough
#: for batches that matter (a batch shorter than this hardly moves a worker's peak).
SAMPLE_INTERVAL_S = 0.25


class WorkerSampler:
    """Records each live worker's peak RSS and CPU time into a pool's metrics.

    A worker that exits between two samples keeps what was last recorded; a process
    psutil cannot read is skipped, never an error.
    """

    def __init__(self, metrics: PoolMetrics) -> None:
        self.metrics = metrics
        self._processes: dict[int, psutil.Process] = {}

    def sample(self, workers: Iterable[WorkerHandle]) -> None:
        """Take one sample of every worker in ``workers`` that is not known dead."""
        for worker in workers:
            if worker.dead:
                continue
            try:
                proc = self._processes.get(worker.pid)
                if proc is None:
                    proc = self._processes[worker.pid] = psutil.Process(worker.pid)
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
            except psutil.Error:
                continue
            peaks = self.metrics.rss_peak_by_pid
            peaks[worker.pid] = max(peaks.get(worker.pid, 0), rss)
            self.metrics.cpu_by_pid[worker.pid] = cpu.user + cpu.system
