"""Planning: validate a chain against its source plane, pick the lane and every sink's
plane, and describe it all as a frozen ``PipelineExplain``. Pure: touches no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from agora.errors import PipelineError
from agora.middleware.base import AnyMiddleware, MiddlewareKind
from agora.middleware.io import io_concurrency_of
from agora.planes import DataPlane, SinkDataPlaneSpec
from agora.protocols import ProcessStage
from agora.runtime.prefetch import prefetch_limit_of
from agora.sinks.base import BaseSink
from agora.sinks.fanout import SinkFanOut
from agora.sinks.router import SinkRouter
from agora.sources.base import BaseSource

__all__ = [
    "Lane",
    "MiddlewareExplain",
    "PipelineExplain",
    "Plan",
    "SinkExplain",
    "WriterKind",
    "WriterTarget",
    "make_plan",
]

#: What ``build()`` / ``fan_out()`` / ``route()`` bind a pipeline to.
WriterTarget: TypeAlias = BaseSink | SinkFanOut | SinkRouter


class Lane(StrEnum):
    """How the engine pumps the source: record by record (``linear``, a row source) or
    one source batch per unit (``batch``, a Python- or Arrow-batch source)."""

    LINEAR = "linear"
    BATCH = "batch"


class WriterKind(StrEnum):
    """What the pipeline writes to: one sink, a fan-out to every sink, or a router."""

    SINK = "sink"
    FAN_OUT = "fan_out"
    ROUTER = "router"


@dataclass(frozen=True)
class MiddlewareExplain:
    index: int
    name: str
    kind: MiddlewareKind
    input_plane: str
    output_plane: str
    process_isolated: bool
    #: records this stage keeps in flight on the I/O lane (None: not on the I/O lane)
    io_concurrency: int | None = None

    @property
    def data_plane(self) -> DataPlane:
        """0.3.0's name for the plane this middleware works on (its input plane)."""
        return DataPlane(self.input_plane)


@dataclass(frozen=True)
class SinkExplain:
    name: str
    accepted_planes: tuple[str, ...]
    native_planes: tuple[str, ...]
    selected_plane: str
    downgraded: bool

    # 0.3.0's attribute names for the same facts (its explain() spelled them so).
    @property
    def sink_name(self) -> str:
        return self.name

    @property
    def accepted_data_planes(self) -> tuple[DataPlane, ...]:
        return tuple(DataPlane(p) for p in self.accepted_planes)

    @property
    def native_data_planes(self) -> tuple[DataPlane, ...]:
        return tuple(DataPlane(p) for p in self.native_planes)

    @property
    def selected_data_plane(self) -> DataPlane:
        return DataPlane(self.selected_plane)

    @property
    def downgraded_from_input(self) -> bool:
        return self.downgraded


@dataclass(frozen=True)
class PipelineExplain:
    """What a run would do, computed without opening, reading or starting anything.

    ``direct_flush_eligible``: the row lane hands each group of ``batch_size`` records to
    the writer in one call. ``arrow_fast_path_eligible``: at least one sink receives the
    ``RecordBatch`` itself. ``arrow_chain_eligible``: the source emits Arrow and the
    middleware chain (if any) works on Arrow, so no rows are built before the writer
    (a sink that does not take Arrow still gets rows there). ``batch_flush_interval_ms``:
    on the row lane, how long a partial group waits for a slow source (None: no limit)."""

    pipeline_id: str
    source_name: str
    max_records: int | None
    lane: Lane
    source_plane: str
    middleware_input_plane: str | None
    middleware_output_plane: str | None
    materializes_arrow_to_rows: bool
    middleware: tuple[MiddlewareExplain, ...]
    writer_kind: WriterKind
    writer_input_plane: str
    sinks: tuple[SinkExplain, ...]
    direct_flush_eligible: bool = False
    arrow_fast_path_eligible: bool = False
    arrow_chain_eligible: bool = False
    batch_flush_interval_ms: float | None = None
    source_prefetch_limit: int | None = None  # read-ahead bound of a prefetching source

    # -- the same plan under the names 0.3.0 used (``explain.planned_lane`` …) ------------
    # Our ``middleware_input_plane`` is the plane the middleware *work on* (rows after the
    # chain entry materialises Arrow); 0.3.0's ``middleware_input_data_plane`` is the plane
    # that *enters* the chain (Arrow, with the materialise flag set). Both are kept.

    @property
    def planned_lane(self) -> str:
        return self.lane.value

    @property
    def source_limit(self) -> int | None:
        return self.max_records

    @property
    def batch_source(self) -> bool:
        return self.lane is Lane.BATCH

    @property
    def source_data_plane(self) -> str:
        return self.source_plane

    @property
    def middleware_input_data_plane(self) -> str:
        """The plane entering the chain: the source's when there is no middleware or
        when the chain entry materialises Arrow to rows."""
        if self.middleware_input_plane is None or self.materializes_arrow_to_rows:
            return self.source_plane
        return self.middleware_input_plane

    @property
    def middleware_output_data_plane(self) -> str:
        return self.middleware_output_plane or self.source_plane

    @property
    def middleware_materializes_arrow_to_rows(self) -> bool:
        return self.materializes_arrow_to_rows

    @property
    def writer_input_data_plane(self) -> str:
        return self.writer_input_plane

    @property
    def middleware_matrix(self) -> tuple[MiddlewareExplain, ...]:
        """0.3.0's name for :attr:`middleware` (each entry has ``index``, ``name`` and
        ``data_plane``)."""
        return self.middleware

    @property
    def sink_downgrade_count(self) -> int:
        return sum(1 for sink in self.sinks if sink.downgraded)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field above, plus the same plan under 0.3.0's keys
        (``planned_lane``, ``source_data_plane``, ``middleware_input_data_plane``,
        ``middleware_materializes_arrow_to_rows``, ``middleware_matrix``,
        ``writer_input_data_plane``, ``sink_downgrade_count``, the ``*_eligible`` flags,
        and per sink ``sink_name``, ``selected_data_plane``, ``downgraded_from_input``…)."""
        data: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        data.update(
            planned_lane=self.planned_lane,
            source_limit=self.source_limit,
            batch_source=self.batch_source,
            source_data_plane=self.source_data_plane,
            middleware_input_data_plane=self.middleware_input_data_plane,
            middleware_output_data_plane=self.middleware_output_data_plane,
            middleware_materializes_arrow_to_rows=self.middleware_materializes_arrow_to_rows,
            middleware_matrix=[{"index": mw.index, "name": mw.name,
                                "data_plane": mw.input_plane} for mw in self.middleware],
            writer_input_data_plane=self.writer_input_data_plane,
            sink_downgrade_count=self.sink_downgrade_count,
        )
        for entry, sink in zip(data["sinks"], self.sinks, strict=True):
            entry.update(
                sink_name=sink.name,
                accepted_data_planes=list(sink.accepted_planes),
                native_data_planes=list(sink.native_planes),
                selected_data_plane=sink.selected_plane,
                downgraded_from_input=sink.downgraded,
            )
        return data

    def __str__(self) -> str:
        limit = "no limit" if self.max_records is None else f"max_records={self.max_records}"
        lines = [
            f"PipelineExplain(pipeline {self.pipeline_id!r}, lane {self.lane}, {limit})",
            f"  source      {self.source_name} ({limit}) emits {self.source_plane}"
            f"{f', read ahead {n}' if (n := self.source_prefetch_limit) else ''}",
            f"  lane        {self.lane}",
        ]
        if self.middleware:
            chain = f"{self.middleware_input_plane} -> {self.middleware_output_plane}"
            if self.materializes_arrow_to_rows:
                chain += " (Arrow materialised to rows once per batch at the chain entry)"
            lines.append(f"  middleware  {chain}")
            for mw in self.middleware:
                where = "process-isolated" if mw.process_isolated else "in-process"
                if mw.io_concurrency is not None:
                    where = f"I/O lane, up to {mw.io_concurrency} in flight"
                lines.append(
                    f"    [{mw.index}] {mw.name:<28} {mw.kind:<6} "
                    f"{mw.input_plane} -> {mw.output_plane}  {where}"
                )
        else:
            lines.append("  middleware  (none)")
        if self.batch_flush_interval_ms is not None and self.lane is Lane.LINEAR:
            lines.append(f"  flush       a partial group waits at most "
                         f"{self.batch_flush_interval_ms:g} ms for the source")
        lines.append(f"  writer      {self.writer_kind}, input {self.writer_input_plane}")
        for sink in self.sinks:
            mark = " (downgraded)" if sink.downgraded else ""
            lines.append(
                f"    sink {sink.name:<24} selected {sink.selected_plane}{mark}  "
                f"(native {', '.join(sink.native_planes)}; accepts {', '.join(sink.accepted_planes)})"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class SinkPlan:
    sink: BaseSink
    spec: SinkDataPlaneSpec
    selected: DataPlane


@dataclass(frozen=True)
class Plan:
    """The validated shape of a run; the engine follows it exactly."""

    lane: Lane
    source_plane: DataPlane
    chain_plane: DataPlane  # plane the middleware chain works on
    materialize_rows: bool  # Arrow source + Python chain: to_pylist once per batch
    writer_kind: WriterKind
    writer_plane: DataPlane
    sinks: tuple[SinkPlan, ...]
    explain: PipelineExplain


def _planes(values: Iterable[DataPlane]) -> tuple[str, ...]:
    order = list(DataPlane)
    return tuple(p.value for p in sorted(values, key=order.index))


def make_plan(
    *, pipeline_id: str,
    source: BaseSource,
    middleware: Sequence[AnyMiddleware],
    writer: WriterTarget,
    max_records: int | None,
    batch_size: int = 1,
    batch_flush_interval_ms: float | None = None,
) -> Plan:
    """Validate and plan. Raises ``PipelineError(stage="pipeline_build")`` on a bad chain."""
    spec = source.data_plane_spec()
    source_plane = DataPlane(spec.emitted_plane)
    lane = Lane.LINEAR if source_plane is DataPlane.PYTHON_ROWS else Lane.BATCH
    arrow_mws = [mw for mw in middleware if mw.kind == MiddlewareKind.ARROW]
    python_mws = [mw for mw in middleware if mw.kind != MiddlewareKind.ARROW]
    if arrow_mws and source_plane is not DataPlane.ARROW_BATCHES:
        raise PipelineError(
            f"Arrow middleware {arrow_mws[0].name!r} cannot follow source "
            f"{spec.source_name!r}, which emits {source_plane.value}; use a source that emits "
            f"arrow_batches, or a Python middleware (Map/BatchMap) instead",
            stage="pipeline_build",
        )
    if arrow_mws and python_mws:
        raise PipelineError(
            f"the chain mixes incompatible data planes: Arrow middleware "
            f"({arrow_mws[0].name!r}) with Python middleware "
            f"({python_mws[0].name!r}) after source {spec.source_name!r} ({source_plane.value}); "
            f"a chain must be all-Arrow or all-Python",
            stage="pipeline_build",
        )
    for mw in middleware:
        if mw.process_isolated and not isinstance(mw, ProcessStage):
            raise PipelineError(
                f"middleware {mw.name!r} sets process_isolated = True but lacks the "
                f"process-stage seam (name, max_in_flight_batches, async submit(), metrics()); "
                f"subclass ProcessBatchMiddleware / ArrowProcessBatchMiddleware instead",
                stage="pipeline_build",
            )
    if lane is Lane.LINEAR:
        for mw in middleware:
            if mw.process_isolated:
                raise PipelineError(
                    f"process middleware {mw.name!r} is batch-only but source "
                    f"{spec.source_name!r} emits {source_plane.value}; use a batch source "
                    f"(e.g. IterableBatchSource, ArrowCsvSource) or an in-process Middleware",
                    stage="pipeline_build",
                )

    materialize = source_plane is DataPlane.ARROW_BATCHES and bool(python_mws)
    if source_plane is DataPlane.ARROW_BATCHES and not python_mws:
        chain_plane = DataPlane.ARROW_BATCHES
    elif lane is Lane.BATCH:
        chain_plane = DataPlane.PYTHON_BATCHES
    else:
        chain_plane = DataPlane.PYTHON_ROWS

    if chain_plane is DataPlane.PYTHON_ROWS and batch_size > 1:
        upstream = DataPlane.PYTHON_BATCHES  # the row-lane writer groups batch_size records
    else:
        upstream = chain_plane

    sinks: Sequence[BaseSink]
    if isinstance(writer, SinkRouter):
        writer_kind, sinks, writer_plane = WriterKind.ROUTER, writer.sinks, DataPlane.PYTHON_ROWS
    elif isinstance(writer, SinkFanOut):
        writer_kind, sinks, writer_plane = WriterKind.FAN_OUT, writer.sinks, upstream
    else:
        writer_kind, sinks, writer_plane = WriterKind.SINK, [writer], upstream
    if not sinks:
        raise PipelineError("the router has no routes and no default sink; add .route() or .default()",
                            stage="pipeline_build")

    sink_plans = []
    for sink in sinks:
        sink_spec = sink.data_plane_spec()
        sink_plans.append(SinkPlan(sink, sink_spec, sink_spec.selected_plane_for(writer_plane)))

    # The row lane hands each group of batch_size records to the writer in one call.
    direct_flush = lane is Lane.LINEAR and batch_size > 1 and writer_kind is not WriterKind.ROUTER
    # Some sink receives the RecordBatch itself (no rows are built for it).
    fast_path = writer_plane is DataPlane.ARROW_BATCHES and any(
        sp.selected is DataPlane.ARROW_BATCHES for sp in sink_plans)

    mw_explain = []
    for i, mw in enumerate(middleware):
        if mw.kind == MiddlewareKind.ARROW:
            plane = DataPlane.ARROW_BATCHES
        else:
            plane = chain_plane
        mw_explain.append(
            MiddlewareExplain(
                index=i,
                name=mw.name,
                kind=mw.kind,
                input_plane=plane.value,
                output_plane=plane.value,
                process_isolated=bool(mw.process_isolated),
                io_concurrency=io_concurrency_of(mw),  # raises on a bad concurrency
            )
        )
    explain = PipelineExplain(
        pipeline_id=pipeline_id,
        source_name=spec.source_name,
        max_records=max_records,
        lane=lane,
        source_plane=source_plane.value,
        middleware_input_plane=chain_plane.value if middleware else None,
        middleware_output_plane=chain_plane.value if middleware else None,
        materializes_arrow_to_rows=materialize,
        middleware=tuple(mw_explain),
        writer_kind=writer_kind,
        writer_input_plane=writer_plane.value,
        direct_flush_eligible=direct_flush,
        arrow_fast_path_eligible=fast_path,
        arrow_chain_eligible=chain_plane is DataPlane.ARROW_BATCHES,
        batch_flush_interval_ms=batch_flush_interval_ms,
        source_prefetch_limit=prefetch_limit_of(source),  # raises on a bad limit
        sinks=tuple(
            SinkExplain(
                name=sp.sink.sink_name,
                accepted_planes=_planes(sp.spec.accepted_planes),
                native_planes=_planes(sp.spec.native_planes),
                selected_plane=sp.selected.value,
                downgraded=sp.selected != upstream,
            )
            for sp in sink_plans
        ),
    )
    return Plan(
        lane=lane,
        source_plane=source_plane,
        chain_plane=chain_plane,
        materialize_rows=materialize,
        writer_kind=writer_kind,
        writer_plane=writer_plane,
        sinks=tuple(sink_plans),
        explain=explain,
    )
