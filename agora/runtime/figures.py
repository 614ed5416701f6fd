"""The run summary's sub-records: frozen, JSON-ready figures for the lane and planes, the
checkpoint, the DLQ, an interruption, the writer, each sink, each process pool and the
driver's resources."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from agora.planes import DataPlane
from agora.runtime.plan import Lane

__all__ = [
    "CheckpointFigures",
    "DLQFigures",
    "Interruption",
    "LaneFigures",
    "ProcessPoolFigures",
    "ResourceFigures",
    "SinkCounts",
    "WriterFigures",
    "json_ready",
]


def json_ready(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists; odd values their ``str``)."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class LaneFigures:
    """How the run was planned: its lane, the source's plane, the writer's input plane,
    and the sinks that receive a plane other than the writer's (downgraded)."""

    execution_lane: Lane
    source_plane: DataPlane
    writer_input_plane: DataPlane
    downgraded_sinks: tuple[str, ...] = ()
    direct_flush_active: bool = False
    arrow_fast_path_active: bool = False
    arrow_chain_active: bool = False


@dataclass(frozen=True)
class CheckpointFigures:
    """The checkpoint key, the position the run resumed from (None: from the start),
    how many saves succeeded and failed, whether a checkpoint store was configured, and
    the source acks that followed the saves (calls made, calls that raised)."""

    key: str
    resumed_from: Any = None
    saves: int = 0
    failures: int = 0
    enabled: bool = False
    acks: int = 0
    ack_failures: int = 0


@dataclass(frozen=True)
class DLQFigures:
    """Records the DLQ stored, records it failed to store, and failures that no DLQ
    captured but the run continued past (``failure_policy=log_and_continue``)."""

    writes: int = 0
    failures: int = 0
    continued_without_dlq: int = 0


@dataclass(frozen=True)
class Interruption:
    """Why a run stopped early (``SIGINT``, ``SIGTERM``, ``cancelled``…), and whether
    in-flight work was abandoned (a second signal, or a cancel)."""

    reason: str
    forced: bool


@dataclass(frozen=True)
class WriterFigures:
    """The groups of records handed to the writer (one per committed unit with records
    left to write — ``batch_size`` records on the row lane, one source batch on the batch
    lane), the largest of them, and the seconds spent writing them all."""

    flushes: int = 0
    max_batch_size: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class SinkCounts:
    """One sink's records written and records it rejected."""

    written: int = 0
    failed: int = 0


#: How ``ProcessPoolFigures.from_metrics`` reads each typed field from a stage's metrics.
_CASTS: dict[str, type] = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class ProcessPoolFigures:
    """One process-isolated middleware's pool counters. ``extra`` keeps any counter a
    stage reports beyond these fields (e.g. ``worker_peak_rss_by_pid``)."""

    batches_submitted: int = 0
    batches_ok: int = 0
    batches_failed: int = 0
    batches_timed_out: int = 0
    batches_invalidated: int = 0
    worker_deaths: int = 0
    pool_recycles: int = 0
    recycle_seconds: float = 0.0
    peak_in_flight: int = 0
    transport_bytes_in: int = 0
    transport_bytes_out: int = 0
    worker_peak_rss_bytes: int = 0
    worker_cpu_seconds: float = 0.0
    pool_state: str = ""
    generation: int = 0
    workers: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> ProcessPoolFigures:
        """Read a stage's ``metrics()`` dict by the fields' own types; a missing counter
        reads as its default (zero, or empty text)."""
        values = {f.name: _CASTS[str(f.type)](metrics.get(f.name) or f.default)
                  for f in fields(cls) if f.name != "extra"}
        extra = {k: v for k, v in metrics.items() if k not in values}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The stage's counters as one flat JSON-ready dict (as ``metrics()`` gave them)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data.update(self.extra)
        result: dict[str, Any] = json_ready(data)
        return result


@dataclass(frozen=True)
class ResourceFigures:
    """psutil figures: the driver's peak RSS and CPU time during the run, and the largest
    single worker's peak RSS over every process stage."""

    main_peak_rss_bytes: int = 0
    main_cpu_seconds: float = 0.0
    workers_peak_rss_bytes: int = 0
