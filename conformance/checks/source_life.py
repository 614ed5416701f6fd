"""Source lifecycle checks (SRC-LIFE-*): a bounded read ends, close is idempotent and valid
unopened, stopping early releases resources, and an empty source is fine."""

from __future__ import annotations

import json

from conformance._agora import DataPlane
from conformance.catalogue import source_check
from conformance.checks._context import SourceContext, open_files_under
from conformance.checks._source_io import read_source

__all__ = [
    "check_close_idempotent",
    "check_close_unopened",
    "check_early_stop_releases",
    "check_empty_source",
    "check_read_to_end",
]


@source_check("SRC-LIFE-01", "open, read to the end, close")
async def check_read_to_end(ctx: SourceContext) -> None:
    """contract §3: ``prepare_resume(None)`` → ``open()`` → the declared stream to its end →
    ``close()`` works on finite input, the stream ends, and no file stays open."""
    ns = ctx.seeded()
    read = await read_source(ctx, ns)
    assert read.units, f"{ctx.name} emitted nothing from non-empty input"
    held = open_files_under(ns.path)
    assert not held, f"{ctx.name}: files still open after close(): {held}"


@source_check("SRC-LIFE-02", "close() is idempotent")
async def check_close_idempotent(ctx: SourceContext) -> None:
    """contract §3: ``close()`` is idempotent — after a full read, closing again (twice) raises
    nothing."""
    ns = ctx.seeded()
    src = ctx.build(ns)
    await src.prepare_resume(None)
    await src.open()
    stream = src.stream() if ctx.plane() is DataPlane.PYTHON_ROWS else src.stream_batches()
    async for _ in stream:
        pass
    for attempt in (1, 2, 3):
        try:
            await src.close()
        except Exception as exc:
            raise AssertionError(
                f"{ctx.name}: close() call #{attempt} raised {type(exc).__name__}: {exc}; "
                f"close() must be idempotent"
            ) from exc


@source_check("SRC-LIFE-03", "closing a source that was never opened is harmless")
async def check_close_unopened(ctx: SourceContext) -> None:
    """contract §3: "a source need not be opened to be closed" — the runtime closes the source
    on rollback when a later startup step fails."""
    src = ctx.build(ctx.seeded())
    try:
        await src.close()
        await src.close()
    except Exception as exc:
        raise AssertionError(
            f"{ctx.name}: close() of a never-opened source raised {type(exc).__name__}: {exc}"
        ) from exc


@source_check("SRC-LIFE-04", "stopping early and closing releases resources")
async def check_early_stop_releases(ctx: SourceContext) -> None:
    """contract §3 and §7 (``max_records``, cancellation): the runtime may stop after the first
    unit; closing the stream and the source then releases every file it opened."""
    ns = ctx.seeded()
    read = await read_source(ctx, ns, max_units=1)
    assert len(read.units) == 1, f"{ctx.name} emitted nothing from non-empty input"
    held = open_files_under(ns.path)
    assert not held, f"{ctx.name}: files still open after stopping early and close(): {held}"


@source_check("SRC-LIFE-05", "an empty source emits nothing, without error")
async def check_empty_source(ctx: SourceContext) -> None:
    """contract §3: empty input is a valid input — the source opens, emits no record, ends,
    closes, and its checkpoint (if any) is still a JSON value."""
    ctx.require_seed_data()
    ns = ctx.seeded([], label="empty")
    read = await read_source(ctx, ns)
    assert not read.rows, f"{ctx.name} emitted {len(read.rows)} record(s) from empty input"
    try:
        json.dumps(read.final_checkpoint, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(
            f"{ctx.name}: checkpoint of an empty read {read.final_checkpoint!r} is not JSON: {exc}"
        ) from exc
