"""Turning a run's counters, as the run ended, into its ``PipelineRunSummary``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from agora.runtime.summary import PipelineRunSummary, describe_error

if TYPE_CHECKING:
    from agora.runtime.engine import _Run

__all__ = ["summarise"]


def summarise(run: _Run, *, elapsed: float, resources: dict[str, Any],
              error: BaseException | None) -> PipelineRunSummary:
    """The summary of ``run`` as it ended; ``error`` is what stopped it (None if nothing)."""
    c = run.committer
    process_metrics: dict[str, Any] = {}
    workers_peak = 0  # the largest single worker's peak RSS, over every process stage
    for mw in run.middleware:
        if getattr(mw, "process_isolated", False) and hasattr(mw, "metrics"):
            m = dict(mw.metrics())
            process_metrics[mw.name] = m
            workers_peak = max(workers_peak, int(m.get("worker_peak_rss_bytes", 0) or 0))
    sink_metrics: dict[str, Any] = {}
    for sink in run.sinks:
        for key, value in (getattr(sink, "runtime_metrics", None) or {}).items():
            sink_metrics[key] = sink_metrics.get(key, 0) + value
    resources["workers_peak_rss_bytes"] = workers_peak
    explain = run.plan.explain
    by_interrupt = isinstance(error, (KeyboardInterrupt, asyncio.CancelledError))
    stopped = run.left_early or by_interrupt
    failed = error is not None and not by_interrupt  # e.g. the final flush after a stop failed
    interruption = None
    if stopped:
        reason = run.stop.reason or ("cancelled" if isinstance(error, asyncio.CancelledError)
                                     else "KeyboardInterrupt")
        interruption = {"reason": reason, "forced": run.stop.forced}
    runtime: dict[str, Any] = {
        "execution_lane": run.plan.lane,
        "source_plane": run.plan.source_plane.value,
        "writer_input_plane": run.plan.writer_plane.value,
        "downgraded_sinks": [s.name for s in explain.sinks if s.downgraded],
        "checkpoint_key": run.checkpoint_key,
        "resumed_from": run.lifecycle.resumed_from,
        "checkpoint_saves": c.checkpoint_saves,
        "checkpoint_failures": c.checkpoint_failures,
        "dlq_writes": c.dlq_writes,
        "dlq_failures": c.dlq_failures,
        "failures_continued_without_dlq": c.uncaptured_continued,
        "unrouted_records": run.writer.unrouted,
        "interruption": interruption,
        "process_batch": process_metrics,
        "sink_metrics": sink_metrics,
        "source_metrics": dict(getattr(run.source, "runtime_metrics", None) or {}),
        "resources": resources,
    }
    runtime.update(sink_metrics)  # e.g. csv_arrow_native_batch_count at top level
    settled = run.written + run.dropped + run.errored
    if failed:
        outcome = "failed"
    elif stopped:
        outcome = "interrupted"
    else:
        outcome = "completed"
    return PipelineRunSummary(
        pipeline_id=run.pipeline_id,
        run_id=run.run_id,
        elapsed_seconds=round(elapsed, 6),
        records_consumed=run.consumed,
        records_written=run.written,
        records_dropped=run.dropped,
        records_errored=run.errored,
        last_checkpoint=c.last_checkpoint,
        by_middleware={ctx.middleware_name: dict(ctx.metrics) for ctx in run.contexts},
        runtime=runtime,
        outcome=outcome,
        error=describe_error(error) if failed and error is not None else None,
        records_abandoned=max(0, run.consumed - settled),
        records_partially_written=run.partially_written,
        by_sink={name: dict(counts) for name, counts in run.writer.per_sink.items()},
    )
