"""Source checks through the real runtime (SRC-LIMIT-*, SRC-RUN-*): ``max_records``
trimming, a trimmed run resumed without loss, and runs interrupted and resumed with a
checkpoint store."""

from __future__ import annotations

from typing import Any

from conformance._agora import DeliveryConfig, SyncInMemoryCheckpointStore, MemorySink, Pipeline
from conformance.catalogue import source_check
from conformance.checks._context import SourceContext
from conformance.checks._source_io import Read, read_source
from conformance.data import describe_sequence_diff
from conformance.harness import Namespace

__all__ = [
    "check_limit_zero_reads_nothing",
    "check_max_records_prefix",
    "check_resumed_runs_are_exact",
    "check_run_through_runtime",
    "check_trimmed_run_resumes_without_loss",
]

_KEY = "conformance"


async def _run(
    ctx: SourceContext, ns: Namespace, *, limit: int | None = None, store: Any = None
) -> tuple[Any, list[Any]]:
    """One run of a fresh source for ``ns`` into a MemorySink: (summary, canonical rows)."""
    sink = MemorySink("conformance-out")
    delivery = (
        DeliveryConfig(checkpoint=store, checkpoint_key=_KEY, checkpoint_every=2) if store else None
    )
    bound = Pipeline(ctx.build(ns), id="conformance-source").build(sink, delivery=delivery)
    summary = await bound.run(max_records=limit)
    return summary, ctx.canon([r for r in sink.records if isinstance(r, dict)])


def _boundaries(read: Read) -> list[int]:
    """Cumulative record counts at the end of each unit."""
    out, total = [], 0
    for unit in read.units:
        total += len(unit.rows)
        out.append(total)
    return out


@source_check("SRC-LIMIT-01", "run(max_records=N) delivers exactly the first N records")
async def check_max_records_prefix(ctx: SourceContext) -> None:
    """contract §3: ``run(max_records=N)`` wraps the source — rows stop at exactly N, batches
    pass while they fit and the last one is trimmed — so the sink receives exactly the
    first N records (all of them when N exceeds the input; none for N = 0)."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns, observe=False)
    total = len(full.rows)
    for n in sorted({1, total // 2 + 1, total, total + 3}):
        summary, out = await _run(ctx, ns, limit=n)
        diff = describe_sequence_diff(full.rows[:n], out)
        assert diff is None, f"{ctx.name} with max_records={n}: {diff}"
        assert summary.records_consumed == min(n, total), (
            f"{ctx.name} with max_records={n}: records_consumed={summary.records_consumed}, "
            f"expected {min(n, total)}"
        )


@source_check(
    "SRC-LIMIT-02", "a run trimmed mid-batch resumes without loss", requires=("checkpoint",)
)
async def check_trimmed_run_resumes_without_loss(ctx: SourceContext) -> None:
    """contract §3: the checkpoint of a trimmed batch must not point past its last emitted
    row — a run stopped by ``max_records`` inside a batch, then resumed from its
    checkpoint, loses nothing, and re-reads at most the trimmed batch."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns, observe=False)
    ends = _boundaries(full)
    inside = [e - 1 for e in ends if e - 1 > 0 and e - 1 not in ends]
    n = inside[len(inside) // 2] if inside else max(1, len(full.rows) // 2)
    store = SyncInMemoryCheckpointStore()
    _, first = await _run(ctx, ns, limit=n, store=store)
    _, second = await _run(ctx, ns, store=store)
    diff = describe_sequence_diff(full.rows[:n], first)
    assert diff is None, f"{ctx.name}: the trimmed run (max_records={n}): {diff}"
    resumed_at = len(full.rows) - len(second)
    unit_start = max([0] + [e for e in ends if e <= n])
    assert resumed_at <= n, (
        f"{ctx.name}: after a run trimmed at {n} records, the resumed run started at record "
        f"{resumed_at} — records {n}..{resumed_at - 1} were never delivered (the trimmed "
        f"batch's checkpoint points past its last emitted row)"
    )
    assert resumed_at >= unit_start, (
        f"{ctx.name}: after a run trimmed at {n}, the resumed run restarted at record "
        f"{resumed_at}, before the trimmed unit (which began at {unit_start})"
    )
    diff = describe_sequence_diff(full.rows[resumed_at:], second)
    assert diff is None, f"{ctx.name}: the resumed run after a trimmed one: {diff}"


@source_check("SRC-LIMIT-03", "run(max_records=0) delivers nothing")
async def check_limit_zero_reads_nothing(ctx: SourceContext) -> None:
    """contract §3: N = 0 → nothing read: no record reaches the sink, none is consumed."""
    summary, out = await _run(ctx, ctx.seeded(), limit=0)
    assert not out and summary.records_consumed == 0, (
        f"{ctx.name} with max_records=0 delivered {len(out)} record(s) "
        f"(consumed {summary.records_consumed})"
    )


@source_check("SRC-RUN-01", "runs through the real runtime into a MemorySink")
async def check_run_through_runtime(ctx: SourceContext) -> None:
    """contract §3 and §7: through ``Pipeline(source).build(MemorySink())`` every record is
    consumed and delivered in order; with checkpoints, a second run from the saved
    checkpoint delivers nothing."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns, observe=False)
    store = SyncInMemoryCheckpointStore() if "checkpoint" in ctx.capabilities() else None
    summary, out = await _run(ctx, ns, store=store)
    diff = describe_sequence_diff(full.rows, out)
    assert diff is None, f"{ctx.name} through the runtime: {diff}"
    assert summary.records_consumed == len(full.rows), (
        f"{ctx.name}: records_consumed={summary.records_consumed}, expected {len(full.rows)}"
    )
    if store is not None:
        _, again = await _run(ctx, ns, store=store)
        assert not again, (
            f"{ctx.name}: a second run from the final checkpoint delivered {len(again)} record(s)"
        )


@source_check(
    "SRC-RUN-02",
    "a run interrupted at a unit boundary and resumed is exact",
    requires=("checkpoint",),
)
async def check_resumed_runs_are_exact(ctx: SourceContext) -> None:
    """contract §3 and §7: a run stopped after k whole units and resumed from the checkpoint
    store delivers, across both runs, every record exactly once, in order."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns, observe=False)
    ends = _boundaries(full)
    n = ends[len(ends) // 2] if ends else 0
    store = SyncInMemoryCheckpointStore()
    _, first = await _run(ctx, ns, limit=n, store=store)
    _, second = await _run(ctx, ns, store=store)
    diff = describe_sequence_diff(full.rows, first + second)
    assert diff is None, (
        f"{ctx.name}: run stopped after {n} records then resumed — together they delivered: {diff}"
    )
