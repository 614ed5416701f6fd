"""Agora: a compact runtime for batch data pipelines.

source → middleware chain → writer (one sink, a fan-out, or a router), with
process-isolated batch transforms and recovery semantics for long batch jobs.

Module map: every module, by package (imports point down — sources, sinks, middleware,
stores and process never import ``runtime`` or ``pipeline``; the runtime imports them;
``testing`` and the command sit on top and use the facade):

    __main__.py      ``python -m agora``; cli.py the ``agora`` command (cli_dlq.py: its
                     ``dlq`` commands), with console.py (its
                     output), targets.py (MODULE:OBJECT → pipeline), demo.py (the demo job)
    pipeline.py      Pipeline / BoundPipeline: the builder users touch
    runtime/         plan.py (planning + explain), engine.py (lanes, ordered commit: diagram),
                     units.py + stages.py (what flows, middleware applied to it), writer.py
                     (sink planes, fan-out, router), delivery.py (the committer: ordered
                     commit, handled-prefix checkpoints, acks), failure_routing.py (DLQ
                     routing, failure policies), triage.py (each failure's class, counts,
                     dead-letter details; the sink failure that stops the run), lifecycle.py (start/stop order),
                     interrupt.py (signals, cancellation), progress.py (live counters),
                     summary.py + figures.py (its sub-records) + report.py + counters.py (run
                     summary), resources.py (psutil),
                     replay.py + replay_report.py (re-sending dead letters), io_lane.py
                     (bounded-concurrency async stages), pacing.py (how far the pump runs
                     ahead; flush deadlines for slow sources), prefetch.py (bounded source
                     read-ahead keeping each emission's position)
    process/         process-isolated batch middleware: middleware.py (the two classes),
                     lane.py (what they share: lifecycle, submission, direct drive),
                     executor.py (the seam), executors.py (fresh pool, WorkerPool), pool.py
                     (generations, timeouts, deaths: diagram), handles.py, courier.py,
                     transport.py, shm.py, workers.py, worker.py, startup.py, sampler.py;
                     zygote.py + forkserver_hook.py + census.py (the private forkserver);
                     dask_executor.py + _dask_lane.py, _dask_ops.py, _dask_task.py (Dask)
    sources/         base.py (contract, max_records), iterable.py, csv.py, arrow_csv.py
                     + arrow_csv_resume.py (input check, record starts to seek to),
                     jsonl.py, arrow_jsonl.py, parquet.py, identity.py (input fingerprints);
                     shared parts _builtin.py, _csvrecords.py, _csvscreen.py, _jsonfile.py,
                     _text.py, _readahead.py (bounded read-ahead thread); dlq.py (a DLQ
                     read back as a source)
    sinks/           base.py (contract), fanout.py + _members.py (its members: distinct
                     names, per-record outcomes), router.py, memory.py, simple.py (Null,
                     Stdout), csv.py + _csvformat.py (its dialect), jsonl.py, parquet.py
                     + _parquet_dataset.py, _parquet_parts.py, _parquet_schema.py; _files.py
                     (output files)
    middleware/      base.py (contracts, incl. the Arrow filter hook), builtins.py
                     (Map/Filter/Apply),
                     io.py (AsyncMiddleware, RetryPolicy, Backpressure)
    stores/          checkpoint.py + checkpoint_sqlite.py (the synchronous stores),
                     checkpoint_async.py (the top-level stores: coroutine methods over them),
                     checkpoint_backend.py (over a key/value backend), checkpoint_legacy.py
                     (0.3.0's checkpoint file); dlq.py (SQLite) + dlq_jsonl.py,
                     dlq_schema.py, dlq_read.py, dlq_state.py (replay state), dlq_legacy.py
                     (0.3.0's DLQ file); _files.py
    testing/         for users' tests: faults.py (fault injectors), sinks.py (FlakySink),
                     processes.py (no orphans, no leaks), handshake.py, calibrate.py
    core/            0.3.0 import paths, re-exports only: batch.py, checkpoint.py, context.py,
                     data_plane.py, dlq.py, errors.py, failures.py, middleware.py,
                     pipeline.py, sink.py, source.py, types.py, writer.py
    core/runtime/    0.3.0's private runtime names, importable but refusing use:
                     _buffered.py, _delivery.py, _source_adapter.py, _writer_transport.py,
                     _process.py, _process_codec.py
    middlewares/     0.3.0 import path: process.py
    sinks/file/      0.3.0 import paths: csv.py, jsonlines.py
    sinks/io/        0.3.0 import path: stdout.py
    sources/file/    0.3.0 import path: parquet.py
    state/           0.3.0 import path: backend.py (the in-memory key/value backend)
    protocols.py     the seams the engine drives: checkpoint store, DLQ sink, process stage
    planes.py config.py records.py errors.py failures.py   shared vocabulary
                     (failures.py: the failure taxonomy, classify_failure); _json_values.py (the
                     JSON-safe forms dead-letter records store)
    _safe_files.py   owner-only files in shared folders, opened without following links

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
from agora.failures import AlertSeverity, FailureClassification, FailureDecision, classify_failure
from agora.middleware import (
    ArrowBatchMiddleware,
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    ArrowRowFilter,
    AsyncMiddleware,
    Backpressure,
    BatchApplyMiddleware,
    BatchFilterMiddleware,
    BatchMapMiddleware,
    BatchMiddleware,
    FilterMiddleware,
    MapMiddleware,
    Middleware,
    MiddlewareContext,
    MiddlewareKind,
    RetryPolicy,
)
from agora.pipeline import BoundPipeline, Pipeline
from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec, SourceDataPlaneSpec
from agora.protocols import CheckpointStoreProtocol, DLQSink, ProcessStage
from agora.records import Checkpoint, DLQRecord, DLQStage, MalformedRecord, WriteResult
from agora.runtime.plan import Lane, PipelineExplain, WriterKind
from agora.runtime.summary import (
    CheckpointFigures,
    DLQFigures,
    FailureFigures,
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
    SyncInMemoryCheckpointStore,
    SyncSQLiteCheckpointStore,
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
    "AlertSeverity",
    "ArrowBatchMiddleware",
    "ArrowBatchSource",
    "ArrowCsvSource",
    "ArrowFilterMiddleware",
    "ArrowJsonLinesSource",
    "ArrowMapMiddleware",
    "ArrowProcessBatchMiddleware",
    "ArrowRowFilter",
    "AsyncMiddleware",
    "Backpressure",
    "BaseSink",
    "BaseSource",
    "BatchApplyMiddleware",
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
    "FailureClassification",
    "FailureDecision",
    "FailureFigures",
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
    "RetryPolicy",
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
    "SyncInMemoryCheckpointStore",
    "SyncSQLiteCheckpointStore",
    "WorkerPool",
    "WorkerStartupError",
    "WriteResult",
    "WriterKind",
    "__version__",
    "classify_failure",
    "is_batch_capable_source",
    "read_dlq",
]
