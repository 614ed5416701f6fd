"""Reading a source the way the runtime does (prepare_resume → open → stream → close) and
recording, per emitted unit, its rows and the checkpoint taken right after it."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from conformance._agora import Checkpoint, DataPlane
from conformance.checks._context import SourceContext
from conformance.harness import Namespace

__all__ = [
    "FIRST_RUN",
    "MAX_UNITS",
    "Read",
    "Unit",
    "checkpoint_for",
    "is_malformed",
    "json_roundtrip",
    "read_source",
    "rows_of",
]

#: Pass as ``resume`` for a first run: ``prepare_resume(None)``.
FIRST_RUN: Any = object()
#: A source emitting more units than this is taken to be unbounded.
MAX_UNITS = 100_000
_UNOBSERVED: Any = object()


def is_malformed(item: Any) -> bool:
    """True for the runtime's malformed-record marker (emitted in place of a record)."""
    return type(item).__name__ == "MalformedRecord" and hasattr(item, "raw")


def rows_of(item: Any) -> list[Any]:
    """The records inside one emitted unit (a row, a list of rows, or a RecordBatch)."""
    if isinstance(item, pa.RecordBatch):
        rows: list[Any] = item.to_pylist()
        return rows
    if isinstance(item, Mapping):
        return [item]
    if isinstance(item, list):
        return list(item)
    return [item]


def json_roundtrip(value: Any) -> Any:
    """``value`` as a checkpoint store gives it back (through JSON)."""
    return json.loads(json.dumps(value, allow_nan=False))


def checkpoint_for(source: Any, value: Any) -> Checkpoint:
    """The stored-checkpoint object the runtime hands to ``prepare_resume``."""
    return Checkpoint(
        pipeline_id="conformance",
        run_id="conformance",
        source=source.source_name,
        value=json_roundtrip(value),
    )


@dataclass
class Unit:
    """One emitted unit: its canonical rows and the checkpoint observed right after it."""

    rows: list[Hashable]
    checkpoint: Any = _UNOBSERVED
    malformed: bool = False
    raw: Any = None
    snapshot: Any = None  # canonical rows taken the moment the unit was emitted


@dataclass
class Read:
    """A complete read of one source instance."""

    units: list[Unit] = field(default_factory=list)
    initial_checkpoint: Any = _UNOBSERVED  # current_checkpoint() after open, before reading
    plane: DataPlane | None = None

    @property
    def rows(self) -> list[Hashable]:
        return [row for unit in self.units for row in unit.rows]

    @property
    def final_checkpoint(self) -> Any:
        return self.units[-1].checkpoint if self.units else self.initial_checkpoint


async def read_source(
    ctx: SourceContext,
    ns: Namespace,
    *,
    resume: Any = FIRST_RUN,
    observe: bool = True,
    keep_raw: bool = False,
    max_units: int | None = None,
    close: bool = True,
) -> Read:
    """Build a fresh source for ``ns``, resume it, open it, read it to the end (or
    ``max_units``), and close it.

    ``observe`` takes ``current_checkpoint()`` after every unit; ``keep_raw`` keeps each
    emitted item (and a snapshot of its rows taken at emission) for plane and stability
    checks. Raises AssertionError if the source looks unbounded.
    """
    source = ctx.build(ns)
    await source.prepare_resume(None if resume is FIRST_RUN else checkpoint_for(source, resume))
    await source.open()
    result = Read(plane=DataPlane(source.data_plane_spec().emitted_plane))
    if observe:
        result.initial_checkpoint = source.current_checkpoint()
    stream = source.stream() if result.plane is DataPlane.PYTHON_ROWS else source.stream_batches()
    try:
        async for item in stream:
            malformed = is_malformed(item)
            rows = [] if malformed else ctx.canon(rows_of(item))
            unit = Unit(rows=rows, malformed=malformed)
            if observe:
                unit.checkpoint = source.current_checkpoint()
            if keep_raw:
                unit.raw = item
                unit.snapshot = list(rows)
            result.units.append(unit)
            if max_units is not None and len(result.units) >= max_units:
                break
            if len(result.units) > MAX_UNITS:
                raise AssertionError(
                    f"source {source.source_name!r} emitted more than {MAX_UNITS} units from "
                    f"a finite data set; it does not end"
                )
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        if close:
            await source.close()
    return result
