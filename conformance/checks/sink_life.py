"""Sink lifecycle checks (SNK-LIFE-*): open/write/flush/close, idempotent close, close
implies flush, no phantom output, misuse errors, and no leaked resources after failures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from conformance.catalogue import Level, sink_check
from conformance.checks._context import SinkContext, open_files_under
from conformance.checks._sink_ops import (
    ExplodingRecord,
    assert_contains,
    assert_persisted,
    check_results,
    write_all,
)

__all__ = [
    "check_close_idempotent",
    "check_close_implies_flush",
    "check_close_releases_files",
    "check_close_unopened",
    "check_failed_write_leaves_sink_usable",
    "check_flush_idempotent",
    "check_flush_makes_readable",
    "check_happy_path",
    "check_misuse_after_close",
    "check_misuse_before_open",
    "check_no_phantom_output",
    "check_acknowledged_writes_persist_in_any_state",
    "check_resume_continues_output",
]


@sink_check("SNK-LIFE-01", "open, write, write_batch, flush, close")
async def check_happy_path(ctx: SinkContext) -> None:
    """contract §4: ``open()`` → ``write`` / ``write_batch`` / ``flush`` → ``close()`` works, and
    (with a read-back) persists exactly what was written."""
    rows = ctx.rows(9)
    ns = ctx.namespace("happy")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows[:4], [3])
    await sink.flush()
    await write_all(ctx, sink, rows[4:], [4])
    await sink.flush()
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, rows, "after open/write/flush/close")


@sink_check(
    "SNK-LIFE-02", "writing or flushing before open() raises, naming the sink", level=Level.SHOULD
)
async def check_misuse_before_open(ctx: SinkContext) -> None:
    """contract §4: lifecycle misuse — writing or flushing before ``open()`` — raises an error
    naming the sink (built-ins raise it; a SHOULD for third parties)."""
    sink = ctx.build(ctx.namespace("early"))
    row = ctx.rows(1)[0]
    problems = [
        await _misuse(ctx, "write() before open()", lambda: sink.write(row)),
        await _misuse(ctx, "write_batch() before open()", lambda: sink.write_batch([row])),
        await _misuse(ctx, "flush() before open()", lambda: sink.flush()),
    ]
    found = [p for p in problems if p]
    assert not found, "; ".join(found)


@sink_check(
    "SNK-LIFE-03", "writing or flushing after close() raises, naming the sink", level=Level.SHOULD
)
async def check_misuse_after_close(ctx: SinkContext) -> None:
    """contract §4: lifecycle misuse — writing or flushing after ``close()`` — raises an error
    naming the sink, instead of silently dropping the data."""
    sink = ctx.build(ctx.namespace("late"))
    row = ctx.rows(1)[0]
    await sink.open()
    await sink.close()
    problems = [
        await _misuse(ctx, "write() after close()", lambda: sink.write(row)),
        await _misuse(ctx, "write_batch() after close()", lambda: sink.write_batch([row])),
        await _misuse(ctx, "flush() after close()", lambda: sink.flush()),
    ]
    found = [p for p in problems if p]
    assert not found, "; ".join(found)


async def _misuse(ctx: SinkContext, what: str, call: Callable[[], Awaitable[Any]]) -> str | None:
    sink_name = ctx.probe().sink_name
    try:
        await call()
    except Exception as exc:
        if sink_name not in str(exc):
            return (
                f"{what} raised {type(exc).__name__}({exc}) without naming the sink {sink_name!r}"
            )
        return None
    return f"{what} was accepted silently; it must raise an error naming the sink"


@sink_check("SNK-LIFE-04", "close() is idempotent", requires=("persists",))
async def check_close_idempotent(ctx: SinkContext) -> None:
    """contract §4: ``close()`` is idempotent — a second and third close neither raise nor
    change what was persisted."""
    rows = ctx.rows(5)
    ns = ctx.namespace("close3")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows, [5])
    await sink.close()
    for attempt in (2, 3):
        try:
            await sink.close()
        except Exception as exc:
            raise AssertionError(
                f"{ctx.name}: close() call #{attempt} raised {type(exc).__name__}: {exc}; "
                f"close() must be idempotent"
            ) from exc
    if ctx.can_read_back:
        assert_persisted(ctx, ns, rows, "after closing three times")


@sink_check("SNK-LIFE-05", "close() implies flush()", requires=("persists",))
async def check_close_implies_flush(ctx: SinkContext) -> None:
    """contract §4: ``close()`` implies ``flush()`` — records written and never explicitly
    flushed are all persisted after ``close()``."""
    rows = ctx.rows(7)
    ns = ctx.namespace("noflush")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows, [2, 3])
    await sink.close()
    assert_persisted(ctx, ns, rows, "after write and close() without flush()")


@sink_check(
    "SNK-LIFE-06",
    "open() then close() with no writes leaves no phantom records",
    requires=("persists",),
)
async def check_no_phantom_output(ctx: SinkContext) -> None:
    """contract §4: a sink persists what it is given and nothing else — opening and closing
    it without writes leaves no records behind (a header alone is fine)."""
    ns = ctx.namespace("empty")
    sink = ctx.build(ns)
    await sink.open()
    await sink.close()
    assert_persisted(ctx, ns, [], "after open() and close() with no writes")


@sink_check(
    "SNK-LIFE-07", "flush() is idempotent and safe with nothing buffered", requires=("persists",)
)
async def check_flush_idempotent(ctx: SinkContext) -> None:
    """contract §4: ``flush()`` may be called at any time while open — with nothing buffered,
    or twice in a row — without error and without persisting anything twice."""
    rows = ctx.rows(6)
    ns = ctx.namespace("flush2")
    sink = ctx.build(ns)
    await sink.open()
    await sink.flush()
    await sink.flush()
    await write_all(ctx, sink, rows, [4])
    await sink.flush()
    await sink.flush()
    await sink.close()
    assert_persisted(ctx, ns, rows, "after repeated flush() calls")


@sink_check(
    "SNK-LIFE-08",
    "flush() makes what was written durable and readable",
    requires=("readable-before-close",),
)
async def check_flush_makes_readable(ctx: SinkContext) -> None:
    """contract §7: before a checkpoint covering a record is saved the runtime flushes the
    sink, so after ``flush()`` (sink still open) every record written is persisted."""
    rows = ctx.rows(10)
    ns = ctx.namespace("flushed")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows[:4], [3])
    await sink.flush()
    assert_persisted(ctx, ns, rows[:4], "after the first flush() (sink still open)")
    await write_all(ctx, sink, rows[4:], [5])
    await sink.flush()
    assert_persisted(ctx, ns, rows, "after the second flush() (sink still open)")
    await sink.close()


@sink_check("SNK-LIFE-09", "a failed write leaves the sink usable, closable and leak-free")
async def check_failed_write_leaves_sink_usable(ctx: SinkContext) -> None:
    """contract §4 and §7: a record that fails inside ``write``/``write_batch`` (here: one that
    raises when read) is a per-call or per-record failure — the runtime keeps writing to
    the same sink, so later writes still work, ``close()`` succeeds, no file stays open,
    and the failed record leaves no phantom behind."""
    rows = ctx.rows(6)
    ns = ctx.namespace("explode")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, rows[:2], [2])
    accepted = 0  # exploding records the sink reported written (a lenient sink may)
    try:
        await sink.write(ExplodingRecord())
        accepted += 1
    except Exception:
        pass
    try:
        results = check_results(
            ctx, await sink.write_batch([rows[2], ExplodingRecord(), rows[3]]), 3, "write_batch"
        )
        accepted += 1 if results is None or results[1].written else 0
    except AssertionError:
        raise
    except Exception:
        pass
    try:
        await write_all(ctx, sink, rows[4:], [2])
    except Exception as exc:
        raise AssertionError(
            f"{ctx.name}: after a failed write, a write of valid records raised "
            f"{type(exc).__name__}: {exc}; a record failure must not break the sink"
        ) from exc
    await sink.close()
    held = open_files_under(ns.path)
    assert not held, f"{ctx.name}: files still open after close() following a failed write: {held}"
    if ctx.can_read_back:
        actual = ctx.read_back(ns)
        assert_contains(ctx, actual, rows[:2] + rows[4:], "records written around a failure")
        known = set(ctx.canon(rows))
        phantom = [r for r in actual if r not in known]
        assert len(phantom) <= accepted, (
            f"{ctx.name}: a record whose write failed left phantom output: {phantom[:2]}"
        )


@sink_check("SNK-LIFE-10", "close() releases every file it opened")
async def check_close_releases_files(ctx: SinkContext) -> None:
    """contract §4: ``close()`` releases resources — after it, the process holds no file under
    the sink's namespace open."""
    ns = ctx.namespace("release")
    sink = ctx.build(ns)
    await sink.open()
    await write_all(ctx, sink, ctx.rows(3), [3])
    await sink.flush()
    await sink.close()
    held = open_files_under(ns.path)
    assert not held, f"{ctx.name}: files still open after close(): {held}"


@sink_check("SNK-LIFE-11", "closing a sink that was never opened is harmless", level=Level.SHOULD)
async def check_close_unopened(ctx: SinkContext) -> None:
    """contract §7 (rollback): when startup fails, components are closed in reverse order —
    a sink that was built but never opened should close without error or output."""
    ns = ctx.namespace("unopened")
    sink = ctx.build(ns)
    await sink.close()
    await sink.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, [], "after close() of a never-opened sink")


@sink_check(
    "SNK-LIFE-12",
    "a sink resumed from a checkpoint, or reopened after close(), continues its output",
    requires=("persists",),
)
async def check_resume_continues_output(ctx: SinkContext) -> None:
    """contract §7 (crash safety, repeated runs): the runtime calls ``resume_output()`` and then
    ``open()`` on a fresh sink when a run resumes from a checkpoint, and reopens the same
    sink for the next run of a bound pipeline. Either way the records earlier runs
    persisted must stay — a sink that starts its output over loses every record before
    the checkpoint."""
    rows = ctx.rows(9)
    ns = ctx.namespace("resume")
    first = ctx.build(ns)
    await first.open()
    await write_all(ctx, first, rows[:3], [3])
    await first.close()
    await first.open()  # the next run of the same bound pipeline
    await write_all(ctx, first, rows[3:6], [3])
    await first.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, rows[:6], "after close(), open() again and more writes")
    resumed = ctx.build(ns)  # a fresh instance, as after a restart
    resumed.resume_output()
    await resumed.open()
    await write_all(ctx, resumed, rows[6:], [3])
    await resumed.close()
    if ctx.can_read_back:
        assert_persisted(ctx, ns, rows, "after a fresh sink was resumed with resume_output()")


async def _acknowledged(
    ctx: SinkContext, what: str, call: Callable[[], Awaitable[Any]], records: list[Any]
) -> tuple[list[Any], str | None]:
    """Call a write in a misuse state: (the records it acknowledged, a description).

    Raising acknowledges nothing. Returning None from ``write()`` or ``write_batch()``
    acknowledges every record; a result list acknowledges those marked written.
    """
    try:
        returned = await call()
    except Exception:
        return [], None
    if isinstance(returned, list) and len(returned) == len(records):
        kept = [r for r, res in zip(records, returned, strict=True) if getattr(res, "written", 0)]
    else:
        kept = list(records)
    return kept, (f"{what} returned without error" if kept else None)


@sink_check(
    "SNK-LIFE-13",
    "a write that returns without error is persisted, in any lifecycle state",
    requires=("persists",),
)
async def check_acknowledged_writes_persist_in_any_state(ctx: SinkContext) -> None:
    """contract §4 and §11: a write that returns without error (or reports ``written=True``)
    is an acknowledgement, and an acknowledged record that is never persisted is lost data
    — whatever the lifecycle state. Before ``open()`` and after ``close()`` a sink should
    raise (SNK-LIFE-02/03); if it accepts instead, what it accepted must be persisted."""
    rows = ctx.rows(10)
    ns = ctx.namespace("ackstate")
    sink = ctx.build(ns)
    acknowledged: list[Any] = []
    notes: list[str] = []
    for what, call, records in (
        ("write() before open()", lambda: sink.write(rows[0]), rows[:1]),
        ("write_batch() before open()", lambda: sink.write_batch(rows[1:3]), rows[1:3]),
    ):
        kept, note = await _acknowledged(ctx, what, call, records)
        acknowledged += kept
        notes += [note] if note else []
    await sink.open()
    await write_all(ctx, sink, rows[3:6], [2])
    acknowledged += rows[3:6]
    await sink.close()
    for what, call, records in (
        ("write() after close()", lambda: sink.write(rows[6]), rows[6:7]),
        ("write_batch() after close()", lambda: sink.write_batch(rows[7:10]), rows[7:10]),
    ):
        kept, note = await _acknowledged(ctx, what, call, records)
        acknowledged += kept
        notes += [note] if note else []
    # A sink that accepted late writes gets every chance to persist them: flush and close
    # again (both must be harmless on a closed sink anyway).
    for finish in (sink.flush, sink.close):
        try:
            await finish()
        except Exception:
            pass
    if not notes and not ctx.can_read_back:
        return  # every out-of-state write raised; writes while open are the other checks'
    actual = ctx.read_back(ns)
    missing = Counter(ctx.canon(acknowledged)) - Counter(actual)
    assert not missing, (
        f"{ctx.name}: {sum(missing.values())} acknowledged record(s) were never persisted "
        f"(e.g. {list(missing)[:2]}); {'; '.join(notes) or 'writes while open'} — a write "
        f"that returns without error must persist its records, or raise (naming the sink)"
    )
