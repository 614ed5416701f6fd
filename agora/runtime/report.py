"""Turning a run's counters, as the run ended, into its ``PipelineRunSummary``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agora.records import Checkpoint
from agora.runtime.resources import ResourceSampler
from agora.runtime.summary import (
    CheckpointFigures,
    DLQFigures,
    Interruption,
    LaneFigures,
    MiddlewareCounts,
    Outcome,
    PipelineRunSummary,
    ProcessPoolFigures,
    ResourceFigures,
    SinkCounts,
    WriterFigures,
    describe_error,
)

if TYPE_CHECKING:
    from agora.runtime.engine import _Run

__all__ = ["summarise"]


def summarise(run: _Run, *, elapsed: float, sampler: ResourceSampler,
              error: BaseException | None) -> PipelineRunSummary:
    """The summary of ``run`` as it ended; ``error`` is what stopped it (None if nothing)."""
    c = run.committer
    pools = {st.name: ProcessPoolFigures.from_metrics(st.process.metrics())
             for st in run.stages if st.process is not None}
    sink_metrics: dict[str, int | float] = {}
    for sink in run.sinks:
        for key, value in sink.runtime_metrics.items():
            sink_metrics[key] = sink_metrics.get(key, 0) + value
    by_interrupt = isinstance(error, (KeyboardInterrupt, asyncio.CancelledError))
    stopped = run.left_early or by_interrupt
    failed = error is not None and not by_interrupt  # e.g. the final flush after a stop failed
    interruption = None
    if stopped:
        reason = run.stop.reason or ("cancelled" if isinstance(error, asyncio.CancelledError)
                                     else "KeyboardInterrupt")
        interruption = Interruption(reason=reason, forced=run.stop.forced)
    if failed:
        outcome = Outcome.FAILED
    elif stopped:
        outcome = Outcome.INTERRUPTED
    else:
        outcome = Outcome.COMPLETED
    settled = run.written + run.dropped + run.errored
    plan = run.plan
    return PipelineRunSummary(
        pipeline_id=run.pipeline_id,
        run_id=run.run_id,
        elapsed_seconds=round(elapsed, 6),
        records_consumed=run.consumed,
        records_written=run.written,
        records_dropped=run.dropped,
        records_errored=run.errored,
        last_checkpoint=None if c.last_checkpoint is None else Checkpoint(
            pipeline_id=run.pipeline_id, run_id=run.run_id, source=run.source.source_name,
            value=c.last_checkpoint),
        lane=LaneFigures(
            execution_lane=plan.lane,
            source_plane=plan.source_plane,
            writer_input_plane=plan.writer_plane,
            downgraded_sinks=tuple(s.name for s in plan.explain.sinks if s.downgraded),
            # The engine follows the plan exactly, so what was eligible was active.
            direct_flush_active=plan.explain.direct_flush_eligible,
            arrow_fast_path_active=plan.explain.arrow_fast_path_eligible,
            arrow_chain_active=plan.explain.arrow_chain_eligible,
        ),
        checkpoint=CheckpointFigures(
            key=run.checkpoint_key, resumed_from=run.lifecycle.resumed_from,
            saves=c.checkpoint_saves, failures=c.checkpoint_failures,
            enabled=c.store is not None and c.checkpoint_supported,
            acks=c.acks, ack_failures=c.ack_failures,
        ),
        outcome=outcome,
        error=describe_error(error) if failed and error is not None else None,
        records_abandoned=max(0, run.consumed - settled),
        records_partially_written=run.partially_written,
        by_middleware={ctx.middleware_name: MiddlewareCounts(ctx.metrics) for ctx in run.contexts},
        by_sink={name: SinkCounts(written=counts.written, failed=counts.failed)
                 for name, counts in run.writer.per_sink.items()},
        dlq=DLQFigures(writes=c.router.dlq_writes, failures=c.router.dlq_failures,
                       continued_without_dlq=c.router.uncaptured_continued),
        interruption=interruption,
        process_pools=pools,
        resources=ResourceFigures(
            main_peak_rss_bytes=sampler.peak_rss_bytes(),
            main_cpu_seconds=sampler.cpu_seconds(),
            workers_peak_rss_bytes=max((p.worker_peak_rss_bytes for p in pools.values()),
                                       default=0),
        ),
        sink_metrics=sink_metrics,
        source_metrics=dict(run.source.runtime_metrics),
        unrouted_records=run.writer.unrouted,
        source_name=run.source.source_name,
        middleware_stop_failures={name: describe_error(exc) for name, exc
                                  in run.lifecycle.stop_failures.items()},
        writer=WriterFigures(flushes=run.writer.flushes, max_batch_size=run.writer.flush_max,
                             seconds=round(run.writer.flush_s, 6)),
        source_prefetch=run.prefetch_figures(),
        failures=c.router.failures.figures(),
    )
