"""Sink data-plane checks (SNK-PLANE-*): Arrow-native sinks round-trip RecordBatches
(slices, zero rows, nulls/NaN/unicode/timestamps); rows-only sinks refuse them and work
through the runtime's own downgrade."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from conformance._agora import ArrowBatchSource, DeliveryConfig, Pipeline
from conformance.catalogue import sink_check
from conformance.checks._context import SinkContext
from conformance.checks._sink_ops import assert_persisted, check_results, failed_indices
from conformance.data import feature_batch

__all__ = [
    "check_arrow_and_rows_agree",
    "check_arrow_batch_accepted",
    "check_arrow_batches_in_order",
    "check_arrow_features_roundtrip",
    "check_arrow_source_through_runtime",
    "check_rows_only_refuses_arrow",
    "check_sliced_batches",
    "check_zero_row_batches",
]


async def write_arrow(ctx: SinkContext, sink: Any, batch: pa.RecordBatch) -> None:
    """``write_arrow_batch`` with the contract §4 result shape and no failure reported."""
    results = check_results(
        ctx,
        await sink.write_arrow_batch(batch),
        batch.num_rows,
        "write_arrow_batch",
    )
    bad = failed_indices(results)
    assert not bad, (
        f"{ctx.name}.write_arrow_batch reported rows {bad} of a valid batch as failed: "
        f"{[str(results[i].error) for i in bad][:3]}"  # type: ignore[index]
    )


@sink_check(
    "SNK-PLANE-01", "an Arrow-native sink accepts a RecordBatch", requires=("arrow-native",)
)
async def check_arrow_batch_accepted(ctx: SinkContext) -> None:
    """contract §2 (honest declarations) and §4: a sink declaring ``arrow_batches`` native
    receives the runtime's original ``RecordBatch`` in ``write_arrow_batch`` and must
    write it — one result per row, and (with a read-back) every row persisted."""
    batch = ctx.batch(8)
    ns = ctx.namespace("arrow")
    sink = ctx.build(ns)
    await sink.open()
    await write_arrow(ctx, sink, batch)
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, batch.to_pylist(), "after write_arrow_batch")


@sink_check(
    "SNK-PLANE-02",
    "sliced RecordBatches (non-zero offset) persist the slice",
    requires=("arrow-native", "persists"),
)
async def check_sliced_batches(ctx: SinkContext) -> None:
    """contract §3 (``max_records`` trims with ``RecordBatch.slice``) and §4: a slice shares
    its parent's buffers with an offset; the sink must persist exactly the slice's rows,
    not the parent's."""
    parent = ctx.batch(20)
    slices = [parent.slice(5, 6), parent.slice(0, 3), parent.slice(17)]
    ns = ctx.namespace("slices")
    sink = ctx.build(ns)
    await sink.open()
    for piece in slices:
        await write_arrow(ctx, sink, piece)
    await sink.close()
    expected = [row for piece in slices for row in piece.to_pylist()]
    assert_persisted(ctx, ns, expected, "after writing sliced batches", ordered=ctx.harness.ordered)


@sink_check(
    "SNK-PLANE-03",
    "zero-row RecordBatches are accepted and persist nothing",
    requires=("arrow-native",),
)
async def check_zero_row_batches(ctx: SinkContext) -> None:
    """contract §3 and §4: a trimmed or filtered batch can have zero rows; ``write_arrow_batch``
    returns None or an empty list for it and adds no record."""
    batch = ctx.batch(6)
    zero = [batch.slice(3, 0), pa.RecordBatch.from_pylist([], schema=batch.schema)]
    ns = ctx.namespace("zerorows")
    sink = ctx.build(ns)
    await sink.open()
    for piece in zero:
        check_results(ctx, await sink.write_arrow_batch(piece), 0, "write_arrow_batch(<0 rows>)")
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, [], "after writing only zero-row batches")


@sink_check(
    "SNK-PLANE-04",
    "nulls, NaN, unicode and timestamps round-trip through the Arrow path",
    requires=("arrow-native", "persists"),
)
async def check_arrow_features_roundtrip(ctx: SinkContext) -> None:
    """contract §2 and §4: every value kind the medium declares (``harness.features``: nulls,
    NaN, ±inf, unicode, empty strings, UTC timestamps, 64-bit integers) survives
    ``write_arrow_batch``, whole and sliced."""
    batch = feature_batch(ctx.features)
    ns = ctx.namespace("features")
    sink = ctx.build(ns)
    await sink.open()
    await write_arrow(ctx, sink, batch)
    await write_arrow(ctx, sink, batch.slice(2))
    await sink.close()
    expected = batch.to_pylist() + batch.slice(2).to_pylist()
    assert_persisted(ctx, ns, expected, "value round trip via write_arrow_batch")


@sink_check(
    "SNK-PLANE-05",
    "the Arrow path and the row path persist the same data",
    requires=("arrow-native", "persists"),
)
async def check_arrow_and_rows_agree(ctx: SinkContext) -> None:
    """contract §2: the plane a sink receives is a routing decision, not a semantic one — the
    same data written as a RecordBatch or as rows must persist identically."""
    batch = feature_batch(ctx.features)
    arrow_ns, rows_ns = ctx.namespace("viaarrow"), ctx.namespace("viarows")
    via_arrow, via_rows = ctx.build(arrow_ns), ctx.build(rows_ns)
    await via_arrow.open()
    await write_arrow(ctx, via_arrow, batch)
    await via_arrow.close()
    await via_rows.open()
    check_results(ctx, await via_rows.write_batch(batch.to_pylist()), batch.num_rows, "write_batch")
    await via_rows.close()
    from_arrow = ctx.read_back(arrow_ns)
    from_rows = ctx.read_back(rows_ns)
    assert sorted(map(repr, from_arrow)) == sorted(map(repr, from_rows)), (
        f"{ctx.name}: the Arrow path persisted {from_arrow[:2]}... but the row path persisted "
        f"{from_rows[:2]}... for the same data"
    )


@sink_check(
    "SNK-PLANE-06",
    "a rows-only sink refuses a RecordBatch passed directly",
    requires=("rows-only",),
)
async def check_rows_only_refuses_arrow(ctx: SinkContext) -> None:
    """contract §2 (honest declarations) and §4: the runtime calls ``write_arrow_batch`` only on
    sinks whose native planes include Arrow; a rows-only sink that silently accepts a
    RecordBatch hides a mis-declaration (it should declare Arrow native) — it must raise."""
    ns = ctx.namespace("refuse")
    sink = ctx.build(ns)
    await sink.open()
    try:
        await sink.write_arrow_batch(ctx.batch(4))
    except Exception:
        pass
    else:
        raise AssertionError(
            f"{ctx.name} does not declare arrow_batches native, yet write_arrow_batch() "
            f"accepted a RecordBatch; declare native_data_planes including arrow_batches, or "
            f"let the base class raise"
        )
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, [], "after a refused RecordBatch")


@sink_check(
    "SNK-PLANE-07", "an Arrow source reaches the sink through the runtime (downgrade where needed)"
)
def check_arrow_source_through_runtime(ctx: SinkContext) -> None:
    """contract §2: each sink gets its selected plane — Arrow-native sinks the RecordBatch,
    others rows materialised by the runtime's own downgrade path. Run through the real
    ``Pipeline``: every row is written and persisted."""
    batches = [ctx.batch(7), ctx.batch(5, start=7), ctx.batch(9, start=12)]
    ns = ctx.namespace("viaruntime")
    sink = ctx.build(ns)
    bound = Pipeline(ArrowBatchSource(batches), id="conformance-arrow").build(
        sink, delivery=DeliveryConfig(batch_size=4)
    )
    summary = bound.run_sync()
    total = sum(b.num_rows for b in batches)
    assert summary.records_written == total, (
        f"{ctx.name}: the runtime wrote {summary.records_written} of {total} rows from an "
        f"Arrow source (errored {summary.records_errored}, dropped {summary.records_dropped})"
    )
    if ctx.can_read_back:
        expected = [row for b in batches for row in b.to_pylist()]
        assert_persisted(ctx, ns, expected, "Arrow source → runtime → sink")


@sink_check(
    "SNK-PLANE-08",
    "consecutive Arrow batches persist completely and in order",
    requires=("arrow-native", "persists", "ordered"),
)
async def check_arrow_batches_in_order(ctx: SinkContext) -> None:
    """contract §4 and §7 (source-order commits): batches written one after another, of
    varied sizes, persist every row in arrival order."""
    sizes = (3, 0, 11, 1, 6)
    batches, start = [], 0
    for size in sizes:
        batches.append(ctx.batch(size, start=start))
        start += size
    ns = ctx.namespace("arroworder")
    sink = ctx.build(ns)
    await sink.open()
    for batch in batches:
        await write_arrow(ctx, sink, batch)
    await sink.close()
    expected = [row for b in batches for row in b.to_pylist()]
    assert_persisted(ctx, ns, expected, "several Arrow batches", ordered=True)
