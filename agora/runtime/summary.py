"""The run summary: a frozen record of what one run did, made of typed sub-records (lane
and planes, checkpoint, DLQ, interruption, process pools, per sink, resources — defined
in ``figures.py``, importable from here too), with its ``runtime`` dict, ``to_dict()``
and ``str()`` report; its counter helpers live in ``counters.py``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agora.records import Checkpoint
from agora.runtime.counters import (
    ABSENT_MECHANISMS,
    CSV_ARROW_KEYS,
    MiddlewareCounts,
    RuntimeFigures,
)
from agora.runtime.figures import (
    CheckpointFigures,
    DLQFigures,
    Interruption,
    LaneFigures,
    ProcessPoolFigures,
    ResourceFigures,
    SinkCounts,
    WriterFigures,
    json_ready,
)
from agora.runtime.prefetch import PrefetchFigures
from agora.runtime.triage import FailureFigures

__all__ = [
    "OUTCOMES",
    "CheckpointFigures",
    "DLQFigures",
    "FailureFigures",
    "Interruption",
    "LaneFigures",
    "MiddlewareCounts",
    "Outcome",
    "PipelineRunSummary",
    "ProcessPoolFigures",
    "ResourceFigures",
    "RuntimeFigures",
    "SinkCounts",
    "WriterFigures",
    "describe_error",
]


class Outcome(StrEnum):
    """How a run ended: read to the end of its source and committed everything
    (``completed``), stopped by an exception (``failed``), or stopped by a signal or a
    cancellation before the end of its source (``interrupted``)."""

    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


#: The outcome strings (kept for code written against 0.3).
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


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
    run reads them again.

    The typed sub-records: ``lane`` (lane and planes), ``checkpoint``, ``dlq``,
    ``interruption`` (None unless the run stopped early), ``process_pools[name]``,
    ``by_sink[name]`` (:class:`SinkCounts`), ``resources``; plus ``by_middleware[name]``
    (each middleware's counter dict — open-ended: a middleware may add its own),
    ``sink_metrics`` (sinks' ``runtime_metrics`` summed by key), ``source_metrics``,
    ``unrouted_records``, ``middleware_stop_failures`` (each middleware whose
    ``on_stop`` raised: the error's type and message; logged, never raised) and
    ``writer`` (:class:`WriterFigures`), ``source_prefetch`` (the read-ahead of a source that
    declares ``supports_prefetch``: measured; all off/0 without one), ``failures``
    (:class:`FailureFigures`: every failure handled, by classification and alert
    severity). ``runtime`` is the same facts as one JSON-ready dict under
    their 0.3 names (also readable by attribute); ``to_dict()`` holds it under
    ``"runtime"``. ``last_checkpoint`` is the committed position as a
    :class:`~agora.records.Checkpoint` (pipeline, run, source and ``value``), or None when
    the run committed none; ``last_checkpoint_value`` is its value alone (what
    ``to_dict()`` and the command's ``--json`` output print).
    """

    pipeline_id: str
    run_id: str
    elapsed_seconds: float
    records_consumed: int
    records_written: int
    records_dropped: int
    records_errored: int
    last_checkpoint: Checkpoint | None
    lane: LaneFigures
    checkpoint: CheckpointFigures
    outcome: Outcome = Outcome.COMPLETED
    error: Mapping[str, str] | None = None
    records_abandoned: int = 0
    records_partially_written: int = 0
    by_middleware: Mapping[str, MiddlewareCounts] = field(default_factory=dict)
    by_sink: Mapping[str, SinkCounts] = field(default_factory=dict)
    dlq: DLQFigures = field(default_factory=DLQFigures)
    interruption: Interruption | None = None
    process_pools: Mapping[str, ProcessPoolFigures] = field(default_factory=dict)
    resources: ResourceFigures = field(default_factory=ResourceFigures)
    sink_metrics: Mapping[str, int | float] = field(default_factory=dict)
    source_metrics: Mapping[str, int | float] = field(default_factory=dict)
    unrouted_records: int = 0
    source_name: str = ""
    middleware_stop_failures: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    writer: WriterFigures = field(default_factory=WriterFigures)
    source_prefetch: PrefetchFigures = field(default_factory=PrefetchFigures)
    failures: FailureFigures = field(default_factory=FailureFigures)

    def __post_init__(self) -> None:
        # Counter dicts handed in (by the runtime or by a test) become MiddlewareCounts.
        object.__setattr__(self, "by_middleware", {
            name: counts if isinstance(counts, MiddlewareCounts) else MiddlewareCounts(counts)
            for name, counts in self.by_middleware.items()})
        # A bare value (a summary built by hand) becomes its Checkpoint: one shape.
        last = self.last_checkpoint
        if last is not None and not isinstance(last, Checkpoint):
            object.__setattr__(self, "last_checkpoint", Checkpoint(
                pipeline_id=self.pipeline_id, run_id=self.run_id, source=self.source_name,
                value=last))

    @property
    def by_source(self) -> dict[str, int]:
        """Records consumed per source name (one source per run: ``{source_name: n}``)."""
        return {self.source_name: self.records_consumed}

    @property
    def last_checkpoint_value(self) -> Any:
        """``last_checkpoint.value``, or None when the run committed no position."""
        return None if self.last_checkpoint is None else self.last_checkpoint.value

    @property
    def last_checkpoint_record(self) -> Checkpoint | None:
        """Another name for ``last_checkpoint`` (from when it held the bare value)."""
        return self.last_checkpoint

    @property
    def interrupted(self) -> bool:
        return self.outcome is Outcome.INTERRUPTED

    @property
    def records_per_second(self) -> float:
        return self.records_consumed / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def runtime(self) -> RuntimeFigures:
        """The lane, checkpoint, DLQ, interruption, process-pool, sink, source and
        resource facts as one JSON-ready dict (a fresh copy on every access), under the
        keys 0.3 used: ``execution_lane``, ``source_plane``, ``writer_input_plane``,
        ``downgraded_sinks``, ``checkpoint_key``, ``resumed_from``, ``checkpoint_saves``,
        ``checkpoint_failures``, ``dlq_writes``, ``dlq_failures``,
        ``failures_continued_without_dlq``, ``failure_classification_counts``,
        ``failure_alert_severity_counts``, ``unrouted_records``,
        ``middleware_stop_failures``, ``interruption``,
        ``process_batch``, ``sink_metrics``, ``source_metrics``, ``resources``.

        The same facts also appear under the names 0.3.0 gave them, so code written for it
        reads them unchanged: ``source_data_plane``, ``writer_input_data_plane``,
        ``direct_flush_active``, ``arrow_fast_path_active``, ``arrow_chain_active``,
        ``writer_downgraded_sink_count``, ``checkpoint_enabled``,
        ``checkpoint_save_count``, ``checkpoint_failure_count``, ``dlq_failure_count``,
        ``process_batch_stage_max_in_flight``, the four ``csv_arrow_*`` counters and
        ``buffered_stage_limit`` / ``buffered_stage_max_in_flight`` (over the I/O-lane
        stages: the largest concurrency and the highest peak in flight; 0 without such a
        stage — each stage's ``drain_pending`` calls are ``by_middleware[name]["drains"]``),
        ``writer_flush_count`` / ``_max_batch_size`` / ``_time_ms`` (see ``writer``: groups
        handed to the writer, not sink ``flush()`` calls), ``source_prefetch_enabled`` /
        ``_limit`` / ``_max_depth`` / ``_block_count`` (see ``source_prefetch``); keys naming
        mechanisms Agora does not have (``rust_prefetch_*``, ``adaptive_backpressure_*``)
        read as off/zero. Readable by key or by attribute."""
        stop = self.interruption
        data = {
            "execution_lane": self.lane.execution_lane.value,
            "source_plane": self.lane.source_plane.value,
            "writer_input_plane": self.lane.writer_input_plane.value,
            "downgraded_sinks": list(self.lane.downgraded_sinks),
            "checkpoint_key": self.checkpoint.key,
            "resumed_from": self.checkpoint.resumed_from,
            "checkpoint_saves": self.checkpoint.saves,
            "checkpoint_failures": self.checkpoint.failures,
            "source_acks": self.checkpoint.acks,
            "source_ack_failures": self.checkpoint.ack_failures,
            "dlq_writes": self.dlq.writes,
            "dlq_failures": self.dlq.failures,
            "failures_continued_without_dlq": self.dlq.continued_without_dlq,
            "failure_classification_counts": dict(self.failures.by_classification),
            "failure_alert_severity_counts": dict(self.failures.by_severity),
            "unrouted_records": self.unrouted_records,
            "middleware_stop_failures": {k: dict(v) for k, v in
                                         self.middleware_stop_failures.items()},
            "interruption": None if stop is None else {"reason": stop.reason,
                                                       "forced": stop.forced},
            "process_batch": {name: p.to_dict() for name, p in self.process_pools.items()},
            "sink_metrics": dict(self.sink_metrics),
            "source_metrics": dict(self.source_metrics),
            "resources": {
                "main_peak_rss_bytes": self.resources.main_peak_rss_bytes,
                "main_cpu_seconds": self.resources.main_cpu_seconds,
                "workers_peak_rss_bytes": self.resources.workers_peak_rss_bytes,
            },
        }
        lane = self.lane
        data.update({
            "source_data_plane": lane.source_plane.value,
            "writer_input_data_plane": lane.writer_input_plane.value,
            "direct_flush_active": lane.direct_flush_active,
            "arrow_fast_path_active": lane.arrow_fast_path_active,
            "arrow_chain_active": lane.arrow_chain_active,
            "writer_downgraded_sink_count": len(lane.downgraded_sinks),
            "checkpoint_enabled": self.checkpoint.enabled,
            "checkpoint_save_count": self.checkpoint.saves,
            "checkpoint_failure_count": self.checkpoint.failures,
            "dlq_failure_count": self.dlq.failures,
            "process_batch_stage_max_in_flight": max(
                (p.peak_in_flight for p in self.process_pools.values()), default=0),
        })
        io_stages = [m for m in self.by_middleware.values() if m.get("lane") == "io"]
        data.update({  # 0.3.0's "buffered stages" are Agora's I/O-lane stages
            "buffered_stage_limit": max((int(m["concurrency"]) for m in io_stages), default=0),
            "buffered_stage_max_in_flight": max(
                (int(m["peak_in_flight"]) for m in io_stages), default=0),
            "writer_flush_count": self.writer.flushes,
            "writer_flush_max_batch_size": self.writer.max_batch_size,
            "writer_flush_time_ms": round(self.writer.seconds * 1000.0, 3),
            "source_prefetch_enabled": self.source_prefetch.enabled,
            "source_prefetch_limit": self.source_prefetch.limit,
            "source_prefetch_max_depth": self.source_prefetch.max_depth,
            "source_prefetch_block_count": self.source_prefetch.block_count,
        })
        for key in CSV_ARROW_KEYS:
            data[key] = self.sink_metrics.get(key, 0)
        data.update(ABSENT_MECHANISMS)
        return RuntimeFigures(json_ready(data))

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: the counts, ``outcome``, ``error``,
        ``last_checkpoint``, ``by_middleware``, ``by_sink``, ``records_per_second`` and
        ``runtime`` (see :attr:`runtime`)."""
        data = {
            "pipeline_id": self.pipeline_id,
            "run_id": self.run_id,
            "elapsed_seconds": self.elapsed_seconds,
            "records_consumed": self.records_consumed,
            "records_written": self.records_written,
            "records_dropped": self.records_dropped,
            "records_errored": self.records_errored,
            "records_abandoned": self.records_abandoned,
            "records_partially_written": self.records_partially_written,
            "records_per_second": round(self.records_per_second, 1),
            "last_checkpoint": self.last_checkpoint_value,
            "outcome": self.outcome.value,
            "error": None if self.error is None else dict(self.error),
            "by_middleware": {k: dict(v) for k, v in self.by_middleware.items()},
            "by_sink": {k: {"written": v.written, "failed": v.failed}
                        for k, v in self.by_sink.items()},
            "runtime": self.runtime,
        }
        result: dict[str, Any] = json_ready(data)
        return result

    def __str__(self) -> str:
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
        for name, err in self.middleware_stop_failures.items():
            lines.append(f"  middleware {name} on_stop failed: {err['type']}: {err['message']}")
        stop = self.interruption
        if stop is not None:
            lines.append(f"  interrupted by {stop.reason}"
                         f"{' (forced: in-flight work abandoned)' if stop.forced else ''}")
        lane = self.lane
        lines.append(f"  lane {lane.execution_lane}  source plane {lane.source_plane}  "
                     f"writer input {lane.writer_input_plane}")
        if lane.downgraded_sinks:
            lines.append(f"  downgraded sinks: {', '.join(lane.downgraded_sinks)}")
        cp = self.checkpoint
        lines.append(f"  checkpoint: {cp.saves} saves, {cp.failures} failures, last "
                     f"{json.dumps(self.last_checkpoint_value, default=str)}")
        lines.append(f"  dlq: {self.dlq.writes} records written, {self.dlq.failures} failures")
        if self.failures.by_classification:
            lines.append("  failures by class: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.failures.by_classification.items())))
        for name, p in self.process_pools.items():
            lines.append(
                f"  process {name}: submitted {p.batches_submitted}, ok {p.batches_ok}, "
                f"failed {p.batches_failed}, timed_out {p.batches_timed_out}, invalidated "
                f"{p.batches_invalidated}, worker_deaths {p.worker_deaths}, pool_recycles "
                f"{p.pool_recycles}, peak_in_flight {p.peak_in_flight}")
        for key, value in sorted(self.sink_metrics.items()):
            lines.append(f"  {key}: {value}")
        res = self.resources
        lines.append(
            f"  main peak RSS {res.main_peak_rss_bytes / 2**20:.0f} MiB, "
            f"CPU {res.main_cpu_seconds:.2f}s; largest worker peak RSS "
            f"{res.workers_peak_rss_bytes / 2**20:.0f} MiB"
        )
        for name, m in self.by_middleware.items():
            lines.append(
                f"  middleware {name}: in {m.get('in', 0):,} out {m.get('out', 0):,} "
                f"dropped {m.get('dropped', 0):,} errored {m.get('errored', 0):,}"
            )
            if m.get("lane") == "io":
                lines.append(
                    f"    I/O lane: limit {m['limit']} of {m['concurrency']}, peak in flight "
                    f"{m['peak_in_flight']}, retries {m['retries']}, backpressure moves "
                    f"{m['backpressure_moves']}, latency p50/p95/p99 {m['latency_p50_ms']}/"
                    f"{m['latency_p95_ms']}/{m['latency_p99_ms']} ms"
                )
        for name, s in self.by_sink.items():
            lines.append(f"  sink {name}: written {s.written:,} failed {s.failed:,}")
        return "\n".join(lines)
