"""The run summary and the psutil resource sampler that feeds it."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

__all__ = ["OUTCOMES", "PipelineRunSummary", "ResourceSampler", "describe_error"]

#: How a run ended: read to the end of its source and committed everything (``completed``),
#: stopped by an exception (``failed``), or stopped by a signal / cancellation before
#: the end of its source (``interrupted``).
OUTCOMES = ("completed", "failed", "interrupted")


def describe_error(error: BaseException) -> dict[str, str]:
    """The JSON-ready description of the exception a run stopped with."""
    return {"type": type(error).__name__, "message": str(error)}


@dataclass(frozen=True)
class PipelineRunSummary:
    """What one run did, however it ended (``outcome``, and ``error`` for a failed run).

    Every record consumed is accounted for exactly once::

        records_consumed == records_written + records_dropped + records_errored
                            + records_abandoned

    ``records_written`` counts records written by at least one sink;
    ``records_partially_written`` of those were also rejected by another sink of a
    fan-out (each rejection is dead-lettered or handled by the failure policy).
    ``records_errored`` counts records that failed everywhere they went — including the
    record that stopped a fail-closed run. ``records_abandoned`` were read but not
    committed when the run stopped early; the checkpoint does not cover them, so the next
    run reads them again. ``by_sink[name]`` has each sink's ``written`` and ``failed``
    counts, as ``by_middleware[name]`` has each middleware's. ``runtime`` holds lane/plane
    facts, checkpoint and DLQ counters, the interruption (reason, forced), process-batch
    metrics, sink counters (e.g. CSV Arrow counters) and psutil figures.
    """

    pipeline_id: str
    run_id: str
    elapsed_seconds: float
    records_consumed: int
    records_written: int
    records_dropped: int
    records_errored: int
    last_checkpoint: Any
    by_middleware: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    outcome: str = "completed"
    error: dict[str, str] | None = None
    records_abandoned: int = 0
    records_partially_written: int = 0
    by_sink: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.outcome == "interrupted"

    @property
    def records_per_second(self) -> float:
        return self.records_consumed / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["records_per_second"] = round(self.records_per_second, 1)
        return json.loads(json.dumps(data, default=str))

    def __str__(self) -> str:
        rt = self.runtime
        counts = (f"  consumed {self.records_consumed:,}  written {self.records_written:,}  "
                  f"dropped {self.records_dropped:,}  errored {self.records_errored:,}")
        if self.records_partially_written:
            counts += f"  (written but rejected by a sink {self.records_partially_written:,})"
        if self.records_abandoned:
            counts += f"  abandoned {self.records_abandoned:,} (re-read on resume)"
        lines = [
            f"run {self.run_id} of pipeline {self.pipeline_id}: {self.outcome}, "
            f"{self.elapsed_seconds:.2f}s, {self.records_per_second:,.0f} records/s",
            counts,
        ]
        if self.error is not None:
            lines.append(f"  error: {self.error['type']}: {self.error['message']}")
        stop = rt.get("interruption")
        if stop:
            lines.append(f"  interrupted by {stop.get('reason')}"
                         f"{' (forced: in-flight work abandoned)' if stop.get('forced') else ''}")
        lines += [
            f"  lane {rt.get('execution_lane')}  source plane {rt.get('source_plane')}  "
            f"writer input {rt.get('writer_input_plane')}",
        ]
        if rt.get("downgraded_sinks"):
            lines.append(f"  downgraded sinks: {', '.join(rt['downgraded_sinks'])}")
        lines.append(
            f"  checkpoint: {rt.get('checkpoint_saves', 0)} saves, "
            f"{rt.get('checkpoint_failures', 0)} failures, last {json.dumps(self.last_checkpoint, default=str)}"
        )
        lines.append(
            f"  dlq: {rt.get('dlq_writes', 0)} records written, {rt.get('dlq_failures', 0)} failures"
        )
        for name, metrics in rt.get("process_batch", {}).items():
            keys = ("batches_submitted", "batches_ok", "batches_failed", "batches_timed_out",
                    "batches_invalidated", "worker_deaths", "pool_recycles", "peak_in_flight")
            shown = ", ".join(f"{k.replace('batches_', '')} {metrics[k]}" for k in keys if k in metrics)
            lines.append(f"  process {name}: {shown}")
        for key, value in sorted(rt.get("sink_metrics", {}).items()):
            lines.append(f"  {key}: {value}")
        res = rt.get("resources", {})
        if res:
            lines.append(
                f"  main peak RSS {res.get('main_peak_rss_bytes', 0) / 2**20:.0f} MiB, "
                f"CPU {res.get('main_cpu_seconds', 0):.2f}s; largest worker peak RSS "
                f"{res.get('workers_peak_rss_bytes', 0) / 2**20:.0f} MiB"
            )
        for name, m in self.by_middleware.items():
            lines.append(
                f"  middleware {name}: in {m.get('in', 0):,} out {m.get('out', 0):,} "
                f"dropped {m.get('dropped', 0):,} errored {m.get('errored', 0):,}"
            )
        for name, m in self.by_sink.items():
            lines.append(f"  sink {name}: written {m.get('written', 0):,} failed {m.get('failed', 0):,}")
        return "\n".join(lines)


class ResourceSampler:
    """Samples the main process's RSS on a background thread (psutil), so the summary can
    report the run's peak rather than the process's lifetime peak. The interval trades
    accuracy for overhead: 50 ms costs well under 1% of one core."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_rss = 0
        self._cpu_start = self._proc.cpu_times()

    def __enter__(self) -> ResourceSampler:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="agora-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _sample(self) -> None:
        try:
            rss = self._proc.memory_info().rss
        except psutil.Error:
            return
        if rss > self.peak_rss:
            self.peak_rss = rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def figures(self) -> dict[str, Any]:
        now = self._proc.cpu_times()
        cpu = (now.user - self._cpu_start.user) + (now.system - self._cpu_start.system)
        return {"main_peak_rss_bytes": self.peak_rss, "main_cpu_seconds": round(cpu, 3)}
