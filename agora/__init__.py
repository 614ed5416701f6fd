"""Agora: a compact runtime for batch data pipelines.

source → middleware chain → writer (one sink, a fan-out, or a router), with
process-isolated batch transforms and recovery semantics for long batch jobs.

Module map (imports point down; nothing below ``runtime`` imports it):

    pipeline.py      Pipeline / BoundPipeline: the builder users touch
    runtime/         plan.py (planning + explain), engine.py (lanes, ordered commit),
                     lifecycle.py (start/stop order), delivery.py (DLQ routing, policies,
                     handled-prefix checkpoints), writer.py (sink planes, fan-out, router),
                     stages.py, units.py, summary.py + report.py (run summary),
                     resources.py (psutil), replay.py, interrupt.py
    process/         process-isolated batch middleware: pool generations, transport
    sources/ sinks/  built-in components and their contracts (base.py)
    middleware/      middleware contracts (incl. the Arrow filter hook), Map/Filter built-ins
    stores/          checkpoint stores and DLQ sinks
    protocols.py     the seams the engine drives: checkpoint store, DLQ sink, process stage
    planes.py config.py records.py errors.py   shared vocabulary
    cli.py           the ``agora`` command

Public surface: every name in ``agora.__all__``, and these submodules with their own
``__all__`` — ``agora.errors``, ``agora.protocols``, ``agora.sources``, ``agora.sinks``,
``agora.middleware``, ``agora.stores``, ``agora.process``. Everything else (``runtime``,
``cli``, ``console``, ``targets``, ``demo``, ``config``, ``records``, ``planes``,
``pipeline`` as modules, and any ``_``-prefixed name) is internal and may change without
notice: import what it defines from ``agora``.
"""

from __future__ import annotations

from typing import Any

from agora.config import (
    CheckpointFailurePolicy,
    DeliveryConfig,
    DLQFailurePolicy,
    FailurePolicy,
    SinkFailurePolicy,
)
from agora.errors import (
    AgoraError,
    CheckpointError,
    ContractError,
    DLQError,
    InternalError,
    LifecycleError,
    PipelineError,
    ProcessBatchError,
    ProcessPoolBrokenError,
    SourceRecordError,
    WorkerStartupError,
)
from agora.middleware import (
    ArrowBatchMiddleware,
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    ArrowRowFilter,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    BatchMiddleware,
    FilterMiddleware,
    MapMiddleware,
    Middleware,
    MiddlewareContext,
    MiddlewareKind,
)
from agora.pipeline import BoundPipeline, Pipeline
from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec, SourceDataPlaneSpec
from agora.protocols import CheckpointStoreProtocol, DLQSink, ProcessStage
from agora.records import Checkpoint, DLQRecord, DLQStage, MalformedRecord, WriteResult
from agora.runtime.plan import Lane, PipelineExplain, WriterKind
from agora.runtime.summary import (
    CheckpointFigures,
    DLQFigures,
    Interruption,
    LaneFigures,
    Outcome,
    PipelineRunSummary,
    ProcessPoolFigures,
    ResourceFigures,
    SinkCounts,
)
from agora.sinks import (
    BaseSink,
    CsvSink,
    JsonLinesSink,
    MemorySink,
    NullSink,
    ParquetSink,
    SinkFanOut,
    SinkRouter,
    StdoutSink,
)
from agora.sources import (
    ArrowBatchSource,
    ArrowCsvSource,
    ArrowJsonLinesSource,
    BaseSource,
    CsvSource,
    IterableBatchSource,
    IterableSource,
    JsonLinesSource,
    ParquetSource,
)
from agora.sources.base import is_batch_capable_source
from agora.stores import (
    CheckpointStore,
    InMemoryCheckpointStore,
    JsonLinesDLQSink,
    SQLiteCheckpointStore,
    SQLiteDLQSink,
    read_dlq,
)

__version__ = "0.3.0"

_LAZY = {
    # Imported on first use: the process lanes pull in multiprocessing machinery that a
    # pipeline without process-isolated middleware never needs.
    "ProcessBatchMiddleware": "agora.process",
    "ArrowProcessBatchMiddleware": "agora.process",
    "WorkerPool": "agora.process",
    # Imports nothing of Dask until an executor is built (optional extra agora[dask]).
    "DaskExecutor": "agora.process.dask_executor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agora' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AgoraError",
    "ArrowBatchMiddleware",
    "ArrowBatchSource",
    "ArrowCsvSource",
    "ArrowFilterMiddleware",
    "ArrowJsonLinesSource",
    "ArrowMapMiddleware",
    "ArrowProcessBatchMiddleware",
    "ArrowRowFilter",
    "BaseSink",
    "BaseSource",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "BatchMiddleware",
    "BoundPipeline",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFailurePolicy",
    "CheckpointFigures",
    "CheckpointStore",
    "CheckpointStoreProtocol",
    "ContractError",
    "CsvSink",
    "CsvSource",
    "DLQError",
    "DLQFailurePolicy",
    "DLQFigures",
    "DLQRecord",
    "DLQSink",
    "DLQStage",
    "DaskExecutor",
    "DataPlane",
    "DeliveryConfig",
    "FailurePolicy",
    "FilterMiddleware",
    "InMemoryCheckpointStore",
    "InternalError",
    "Interruption",
    "IterableBatchSource",
    "IterableSource",
    "JsonLinesDLQSink",
    "JsonLinesSink",
    "JsonLinesSource",
    "Lane",
    "LaneFigures",
    "LifecycleError",
    "MalformedRecord",
    "MapMiddleware",
    "MemorySink",
    "Middleware",
    "MiddlewareContext",
    "MiddlewareKind",
    "NullSink",
    "Outcome",
    "ParquetSink",
    "ParquetSource",
    "Pipeline",
    "PipelineError",
    "PipelineExplain",
    "PipelineRunSummary",
    "ProcessBatchError",
    "ProcessBatchMiddleware",
    "ProcessPoolBrokenError",
    "ProcessPoolFigures",
    "ProcessStage",
    "ResourceFigures",
    "SQLiteCheckpointStore",
    "SQLiteDLQSink",
    "SinkCapabilities",
    "SinkCounts",
    "SinkDataPlaneSpec",
    "SinkFailurePolicy",
    "SinkFanOut",
    "SinkRouter",
    "SourceDataPlaneSpec",
    "SourceRecordError",
    "StdoutSink",
    "WorkerPool",
    "WorkerStartupError",
    "WriteResult",
    "WriterKind",
    "__version__",
    "is_batch_capable_source",
    "read_dlq",
]
