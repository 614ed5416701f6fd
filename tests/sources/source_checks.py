"""Reusable checks for sources: drain one, and prove resume is exact at every unit boundary.

The checks raise ``AssertionError`` with a precise message; the tests only drive them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from agora.planes import DataPlane
from agora.records import Checkpoint, MalformedRecord
from agora.sources.base import BaseSource

SourceFactory = Callable[[], BaseSource]


def checkpoint_for(source: BaseSource, value: Any) -> Checkpoint:
    return Checkpoint(pipeline_id="p", run_id="r", source=source.source_name, value=value)


def unit_view(unit: Any) -> Any:
    """A comparable view of one emitted unit (batches as (schema, rows))."""
    if isinstance(unit, pa.RecordBatch):
        return ("arrow", unit.schema, unit.to_pylist())
    return unit


def rows_of(units: list[Any]) -> list[Any]:
    """Flatten units into rows (malformed markers kept in place)."""
    out: list[Any] = []
    for unit in units:
        if isinstance(unit, pa.RecordBatch):
            out.extend(unit.to_pylist())
        elif isinstance(unit, list):
            out.extend(unit)
        else:
            out.append(unit)
    return out


def stream_of(source: BaseSource) -> Any:
    if source.emitted_data_plane is DataPlane.PYTHON_ROWS:
        return source.stream()
    return source.stream_batches()


async def drain_async(
    source: BaseSource, checkpoint: Any = None, *, resume: bool = False
) -> tuple[list[Any], list[Any]]:
    """Resume (if asked), open, read everything, close. Returns (units, checkpoints)."""
    if resume:
        await source.prepare_resume(checkpoint_for(source, checkpoint))
    await source.open()
    units: list[Any] = []
    checkpoints: list[Any] = []
    try:
        async for unit in stream_of(source):
            units.append(unit)
            checkpoints.append(source.current_checkpoint())
    finally:
        await source.close()
    return units, checkpoints


def drain(source: BaseSource, checkpoint: Any = None, *, resume: bool = False) -> list[Any]:
    return asyncio.run(drain_async(source, checkpoint, resume=resume))[0]


def drain_with_checkpoints(source: BaseSource) -> tuple[list[Any], list[Any]]:
    return asyncio.run(drain_async(source))


def split_kinds(units: list[Any]) -> tuple[list[Any], list[Any]]:
    """(good rows, malformed markers), each in emission order."""
    rows = rows_of(units)
    return (
        [r for r in rows if not isinstance(r, MalformedRecord)],
        [r for r in rows if isinstance(r, MalformedRecord)],
    )


def assert_resume_exact(factory: SourceFactory, *, interleaving_may_vary: bool = False) -> int:
    """Resume a fresh source from the checkpoint after every unit k (and from the one
    reported before the first unit); each must emit exactly the units after k.

    With ``interleaving_may_vary`` (sources whose reader reports malformed rows a block
    early, so a marker may come before or after a neighbouring batch), the good rows and
    the malformed markers after k must each match exactly, in order. Checkpoints also go
    through a JSON round trip first, as a store would. Returns the number of units, so a
    caller can guard against a vacuous pass.
    """
    units, checkpoints = drain_with_checkpoints(factory())
    expected: list[Any] = [unit_view(u) for u in units]

    async def initial_checkpoint() -> Any:
        src = factory()
        await src.open()
        try:
            return src.current_checkpoint()
        finally:
            await src.close()

    starts: list[tuple[int, Any]] = [(k + 1, cp) for k, cp in enumerate(checkpoints)]
    first = asyncio.run(initial_checkpoint())
    if first is not None:
        starts.insert(0, (0, first))
    for k, value in starts:
        stored = json.loads(json.dumps(value))
        assert stored == value, f"checkpoint after unit {k} is not JSON-clean: {value!r}"
        src = factory()
        got = drain(src, stored, resume=True)
        if interleaving_may_vary:
            assert split_kinds(got) == split_kinds(units[k:]), (
                f"{src.source_name}: resume from checkpoint {value!r} (after unit {k} of "
                f"{len(units)}) emitted {split_kinds(got)!r}; expected {split_kinds(units[k:])!r}"
            )
            continue
        resumed = [unit_view(u) for u in got]
        assert resumed == expected[k:], (
            f"{src.source_name}: resume from checkpoint {value!r} (after unit {k} of "
            f"{len(units)}) emitted {resumed!r}; expected {expected[k:]!r}"
        )
    return len(units)



def drain_limited(inner: BaseSource, limit: int) -> tuple[list[Any], Any]:
    """Read ``inner`` through ``LimitedSource``; returns (units, final checkpoint)."""
    from agora.sources.base import LimitedSource

    limited = LimitedSource(inner, limit)

    async def go() -> tuple[list[Any], Any]:
        units, _ = await drain_async(limited)
        return units, limited.current_checkpoint()

    return asyncio.run(go())


def is_malformed(unit: Any) -> bool:
    return isinstance(unit, MalformedRecord)


def fingerprint(path: Any, consumed: int) -> dict[str, Any]:
    """The ``"input"`` field a text source records after consuming ``consumed`` bytes."""
    import hashlib
    from pathlib import Path

    data = Path(path).read_bytes()[:consumed]
    return {"consumed": consumed, "sha256": hashlib.sha256(data).hexdigest()}


def at(path: Any, value: dict[str, Any], consumed: int | None = None) -> dict[str, Any]:
    """``value`` with the fingerprint of the file's first ``consumed`` bytes (default: the
    value's ``"byte"``), as the source would have written it."""
    n = value.get("byte", 0) if consumed is None else consumed
    return {**value, "input": fingerprint(path, n)}


def positions(checkpoints: list[Any]) -> list[Any]:
    """Checkpoints without their ``"input"`` fingerprint (for position assertions)."""
    return [{k: v for k, v in cp.items() if k != "input"} for cp in checkpoints]


def parquet_at(path: Any, row: int) -> dict[str, Any]:
    """A ``ParquetSource`` checkpoint after ``row`` rows of the file as it is now."""
    from agora.sources import ParquetSource

    async def identity() -> Any:
        src = ParquetSource(path)
        await src.open()
        try:
            return src.current_checkpoint()["input"]
        finally:
            await src.close()

    return {"row": row, "input": asyncio.run(identity())}
