"""Sink write-semantics checks (SNK-WRITE-*): result shape and order, empty batches,
per-record partial failure, no mutation of inputs, and integrity of what is persisted."""

from __future__ import annotations

import copy

from conformance.catalogue import sink_check
from conformance.checks._context import SinkContext
from conformance.checks._sink_ops import (
    assert_persisted,
    check_results,
    failed_indices,
    write_all,
)

__all__ = [
    "check_batch_results_shape",
    "check_empty_batch",
    "check_inputs_not_mutated",
    "check_inputs_not_retained",
    "check_large_batch",
    "check_many_batches_integrity",
    "check_one_by_one_equals_batched",
    "check_partial_failure_per_record",
    "check_write_order",
    "check_write_returns_none",
]


@sink_check("SNK-WRITE-01", "write() returns None")
async def check_write_returns_none(ctx: SinkContext) -> None:
    """contract §4: ``write()`` returns None or raises — a return value would be ignored and
    could hide a failure the sink meant to report."""
    sink = ctx.build(ctx.namespace("write1"))
    await sink.open()
    for row in ctx.rows(3):
        returned = await sink.write(row)
        assert returned is None, (
            f"{ctx.name}.write() returned {returned!r}; it must return None (or raise)"
        )
    await sink.close()


@sink_check("SNK-WRITE-02", "write_batch() returns None or one WriteResult per input")
async def check_batch_results_shape(ctx: SinkContext) -> None:
    """contract §4: ``write_batch`` returns None (all written) or a list with exactly one
    ``WriteResult`` per input record, in order; valid records are reported written."""
    rows = ctx.rows(11)
    sink = ctx.build(ctx.namespace("results"))
    await sink.open()
    await write_all(ctx, sink, rows, [1, 3, 7])
    await sink.close()


@sink_check("SNK-WRITE-03", "an empty batch is accepted and persists nothing")
async def check_empty_batch(ctx: SinkContext) -> None:
    """contract §4: an empty batch has zero results — ``write_batch([])`` returns None or an
    empty list, raises nothing, and adds no record."""
    ns = ctx.namespace("emptybatch")
    sink = ctx.build(ns)
    await sink.open()
    check_results(ctx, await sink.write_batch([]), 0, "write_batch([])")
    await sink.flush()
    check_results(ctx, await sink.write_batch([]), 0, "write_batch([])")
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, [], "after writing only empty batches")


@sink_check(
    "SNK-WRITE-04",
    "partial failure is reported per record, at the right index",
    requires=("rejects-records",),
)
async def check_partial_failure_per_record(ctx: SinkContext) -> None:
    """contract §4: a batch with invalid records either returns one ``WriteResult`` per input
    — failed (with an exception) exactly at the invalid positions, written elsewhere — or
    raises, meaning the whole call failed and nothing of it was persisted. ``write()`` of
    an invalid record raises. Valid records persist."""
    bad = ctx.invalid_record()
    rows = ctx.rows(7)
    batch = [rows[1], bad, rows[2], rows[3], copy.deepcopy(bad), rows[4]]
    ns = ctx.namespace("partial")
    sink = ctx.build(ns)
    await sink.open()
    # A valid batch first: media that take their columns from the first records (CSV
    # header, inferred Parquet schema) judge validity against them.
    await write_all(ctx, sink, rows[:1], [1])
    expected = list(rows[:5])
    try:
        results = await sink.write_batch(batch)
    except Exception:
        # The whole call failed: legitimate, provided nothing of it was persisted.
        expected = list(rows[:1])
    else:
        checked = check_results(ctx, results, len(batch), "write_batch")
        assert checked is not None, (
            f"{ctx.name}.write_batch returned None (all written) for a batch holding invalid "
            f"records at indices [1, 4]; report them as WriteResult.failed(exc)"
        )
        failed = failed_indices(checked)
        assert failed == [1, 4], (
            f"{ctx.name}.write_batch reported failures at indices {failed}; the invalid "
            f"records are at [1, 4] — results must be one per input, in input order"
        )
        for i in failed:
            assert isinstance(checked[i].error, BaseException), (
                f"{ctx.name}: failed result {i} carries no exception (error={checked[i].error!r})"
            )
    try:
        await sink.write(copy.deepcopy(bad))
    except Exception:
        pass
    else:
        raise AssertionError(
            f"{ctx.name}.write() accepted a record its harness calls invalid; it must raise"
        )
    await write_all(ctx, sink, rows[5:], [2])
    expected += rows[5:]
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(
            ctx, ns, expected, "after a batch with invalid records", ordered=ctx.harness.ordered
        )


@sink_check("SNK-WRITE-05", "caller's records and batch lists are not mutated")
async def check_inputs_not_mutated(ctx: SinkContext) -> None:
    """contract §4: inputs are never mutated — the runtime shares one materialised list of
    rows between the sinks of a fan-out, so a sink that edits it corrupts its siblings."""
    rows = ctx.rows(7)
    snapshot = copy.deepcopy(rows)
    batch = rows[2:7]
    members = [id(r) for r in batch]
    sink = ctx.build(ctx.namespace("mutation"))
    await sink.open()
    await sink.write(rows[0])
    await sink.write(rows[1])
    await sink.write_batch(batch)
    await sink.flush()
    await sink.close()
    assert [id(r) for r in batch] == members, (
        f"{ctx.name}.write_batch changed the caller's list (length or members)"
    )
    for before, after in zip(snapshot, rows, strict=True):
        assert before == after, (
            f"{ctx.name} mutated a caller's record: before {before!r}, after {after!r}"
        )


@sink_check(
    "SNK-WRITE-06", "one-by-one and batched writes persist the same records", requires=("persists",)
)
async def check_one_by_one_equals_batched(ctx: SinkContext) -> None:
    """contract §4: ``write`` and ``write_batch`` are two routes to the same result — the
    runtime picks one by lane and ``batch_size`` — so N records written one at a time or
    as one batch persist the same multiset."""
    rows = ctx.rows(12)
    one_ns, batch_ns = ctx.namespace("single"), ctx.namespace("batched")
    one, batched = ctx.build(one_ns), ctx.build(batch_ns)
    await one.open()
    await write_all(ctx, one, rows, [])
    await one.close()
    await batched.open()
    await write_all(ctx, batched, rows, [len(rows)])
    await batched.close()
    assert_persisted(ctx, one_ns, rows, "records written one by one")
    assert_persisted(ctx, batch_ns, rows, "records written as one batch")


@sink_check(
    "SNK-WRITE-07", "many batches: no loss, no duplicates, no phantoms", requires=("persists",)
)
async def check_many_batches_integrity(ctx: SinkContext) -> None:
    """contract §4 and §7: every record reported written is persisted exactly once and
    nothing else is — across batches of varied sizes (including empty and single ones),
    interleaved single writes and flushes."""
    rows = ctx.rows(40)
    ns = ctx.namespace("integrity")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows[:20], [1, 5, 0, 13])
    await sink.flush()
    await write_all(ctx, sink, rows[20:], [2, 0, 9, 1, 4])
    await sink.close()
    assert_persisted(ctx, ns, rows, "after varied batches")


@sink_check("SNK-WRITE-08", "records persist in write order", requires=("persists", "ordered"))
async def check_write_order(ctx: SinkContext) -> None:
    """contract §4 ("in order") and §7 (source-order commits): on a medium that keeps order,
    records are persisted in the order they were written, within and across batches."""
    rows = ctx.rows(25)
    ns = ctx.namespace("order")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows, [6, 1, 9, 4])
    await sink.close()
    assert_persisted(ctx, ns, rows, "order check", ordered=True)


@sink_check(
    "SNK-WRITE-09",
    "what the caller changes after a write returns does not change what is persisted",
    requires=("persists",),
)
async def check_inputs_not_retained(ctx: SinkContext) -> None:
    """contract §4 and §11 (inputs are never mutated; rows are shared between sinks; data
    persisted is not changed by the caller's later mutation of what it passed): once
    ``write`` / ``write_batch`` returns, the caller may reuse its list and its dicts — a
    sink that keeps references and encodes them later (at ``flush()`` or ``close()``)
    persists what the caller changed, not what it wrote."""
    rows = ctx.rows(9)
    originals = copy.deepcopy(rows)
    ns = ctx.namespace("retain")
    sink = ctx.build(ns)
    await sink.open()
    batch = list(rows[:3])
    await sink.write_batch(batch)
    await sink.write(rows[3])
    second = list(rows[4:6])
    await sink.write_batch(second)
    # The caller reuses its batch lists for other records, then edits every dict it passed.
    batch.clear()
    batch.extend(copy.deepcopy(rows[6:9]))
    second.reverse()
    second.pop()
    for row in rows[:6]:
        row["id"] = -1 - row["id"]
    await sink.write_batch(list(rows[6:9]))
    await sink.close()
    assert_persisted(
        ctx, ns, originals, "after the caller reused its batch lists and edited its records"
    )


@sink_check("SNK-WRITE-10", "a large batch persists completely", requires=("persists",))
async def check_large_batch(ctx: SinkContext) -> None:
    """contract §7 (``batch_size``, Arrow lanes deliver whole batches): a batch of thousands of
    records is written in one call and persisted completely."""
    rows = ctx.rows(3000)
    ns = ctx.namespace("large")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows, [len(rows)])
    await sink.close()
    assert_persisted(ctx, ns, rows, "a batch of 3000 records")
