"""Agora: a compact runtime for batch data pipelines.

source → middleware chain → writer (one sink, a fan-out, or a router), with
process-isolated batch transforms and recovery semantics for long batch jobs.

Module map (imports point down; nothing below ``runtime`` imports it):

    pipeline.py      Pipeline / BoundPipeline: the builder users touch
    runtime/         plan.py (planning + explain), engine.py (lanes, ordered commit),
                     delivery.py (DLQ routing, policies, handled-prefix checkpoints),
                     writer.py (sink planes, fan-out, router), stages.py, units.py,
                     summary.py (run summary, psutil sampling)
    process/         process-isolated batch middleware: pool generations, transport
    sources/ sinks/  built-in components and their contracts (base.py)
    middleware/      middleware contracts and Map/Filter built-ins
    stores/          checkpoint stores and DLQ sinks
    planes.py config.py records.py errors.py   shared vocabulary
    cli.py           the ``agora`` command
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
from agora.errors import AgoraError, CheckpointError, PipelineError, ProcessBatchError
from agora.middleware import (
    ArrowBatchMiddleware,
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    BatchMiddleware,
    FilterMiddleware,
    MapMiddleware,
    Middleware,
)
from agora.pipeline import BoundPipeline, Pipeline
from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec, SourceDataPlaneSpec
from agora.records import Checkpoint, DLQRecord, WriteResult
from agora.runtime.plan import PipelineExplain
from agora.runtime.summary import PipelineRunSummary
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
from agora.stores import (
    CheckpointStore,
    InMemoryCheckpointStore,
    JsonLinesDLQSink,
    SQLiteCheckpointStore,
    SQLiteDLQSink,
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
    "BaseSink",
    "BaseSource",
    "BatchFilterMiddleware",
    "BatchMapMiddleware",
    "BatchMiddleware",
    "BoundPipeline",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFailurePolicy",
    "CheckpointStore",
    "CsvSink",
    "CsvSource",
    "DLQFailurePolicy",
    "DLQRecord",
    "DaskExecutor",
    "DataPlane",
    "DeliveryConfig",
    "FailurePolicy",
    "FilterMiddleware",
    "InMemoryCheckpointStore",
    "IterableBatchSource",
    "IterableSource",
    "JsonLinesDLQSink",
    "JsonLinesSink",
    "JsonLinesSource",
    "MapMiddleware",
    "MemorySink",
    "Middleware",
    "NullSink",
    "ParquetSink",
    "ParquetSource",
    "Pipeline",
    "PipelineError",
    "PipelineExplain",
    "PipelineRunSummary",
    "ProcessBatchError",
    "ProcessBatchMiddleware",
    "SQLiteCheckpointStore",
    "SQLiteDLQSink",
    "SinkCapabilities",
    "SinkDataPlaneSpec",
    "SinkFailurePolicy",
    "SinkFanOut",
    "SinkRouter",
    "SourceDataPlaneSpec",
    "StdoutSink",
    "WorkerPool",
    "WriteResult",
    "__version__",
]
