"""The public facade is exactly what contract §1 names, and the module boundary holds."""

from __future__ import annotations

import agora

EXPECTED = {
    "AgoraError", "AlertSeverity", "ArrowBatchMiddleware", "ArrowBatchSource", "ArrowCsvSource",
    "ArrowFilterMiddleware", "ArrowJsonLinesSource", "ArrowMapMiddleware",
    "ArrowProcessBatchMiddleware", "ArrowRowFilter", "AsyncMiddleware", "Backpressure",
    "BaseSink", "BaseSource",
    "BatchApplyMiddleware", "BatchFilterMiddleware", "BatchMapMiddleware", "BatchMiddleware", "BoundPipeline",
    "Checkpoint", "CheckpointError", "CheckpointFailurePolicy", "CheckpointFigures",
    "CheckpointStore", "CheckpointStoreProtocol", "ContractError", "CsvSink", "CsvSource",
    "DLQError", "DLQFailurePolicy", "DLQFigures", "DLQRecord", "DLQSink", "DLQStage",
    "DaskExecutor", "DataPlane", "DeliveryConfig", "FailureClassification",
    "FailureDecision", "FailureFigures", "FailurePolicy", "FilterMiddleware",
    "InMemoryCheckpointStore", "InternalError", "Interruption", "IterableBatchSource",
    "IterableSource", "JsonLinesDLQSink", "JsonLinesSink", "JsonLinesSource", "Lane",
    "LaneFigures", "LifecycleError", "MalformedRecord", "MapMiddleware", "MemorySink",
    "Middleware", "MiddlewareContext", "MiddlewareKind", "NullSink", "Outcome", "ParquetSink",
    "ParquetSource", "Pipeline", "PipelineError", "PipelineExplain", "PipelineRunSummary",
    "ProcessBatchError", "ProcessBatchMiddleware", "ProcessPoolBrokenError",
    "ProcessPoolFigures", "ProcessStage", "ResourceFigures", "RetryPolicy",
    "SQLiteCheckpointStore",
    "SQLiteDLQSink", "SinkCapabilities", "SinkCounts", "SinkDataPlaneSpec",
    "SinkFailurePolicy", "SinkFanOut", "SinkRouter", "SourceDataPlaneSpec",
    "SourceRecordError", "StdoutSink", "SyncInMemoryCheckpointStore",
    "SyncSQLiteCheckpointStore", "WorkerPool", "WorkerStartupError", "WriteResult", "WriterKind",
    "__version__", "classify_failure", "is_batch_capable_source", "read_dlq",
}

#: Import paths kept for programs and plugins written against 0.3.0: each is a thin
#: re-export, so every name must be the very object the facade exports.
COMPAT_MODULES = {
    "agora.core": ["Pipeline", "BaseSource", "BaseSink", "DataPlane", "SourceDataPlaneSpec",
                   "SinkDataPlaneSpec", "Checkpoint", "DLQRecord", "WriteResult"],
    "agora.core.source": ["BaseSource", "IterableSource", "SourceRecordError",
                          "is_batch_capable_source"],
    "agora.core.sink": ["BaseSink", "SinkFanOut", "SinkRouter", "WriteResult"],
    "agora.core.dlq": ["DLQRecord", "DLQSink", "SQLiteDLQSink", "JsonLinesDLQSink"],
    "agora.core.checkpoint": ["Checkpoint", "CheckpointStore", "InMemoryCheckpointStore",
                              "SQLiteCheckpointStore"],
    "agora.core.middleware": ["Middleware", "MapMiddleware", "FilterMiddleware",
                              "BatchMapMiddleware", "BatchMiddleware"],
    "agora.core.pipeline": ["Pipeline", "BoundPipeline"],
    "agora.core.failures": ["AlertSeverity", "FailureClassification", "FailureDecision",
                            "classify_failure"],
    "agora.middlewares": ["MapMiddleware", "FilterMiddleware", "ArrowMapMiddleware"],
    "agora.middlewares.process": ["ProcessBatchMiddleware", "ArrowProcessBatchMiddleware"],
    "agora.sinks.file.csv": ["CsvSink"],
    "agora.sinks.file.jsonlines": ["JsonLinesSink"],
    "agora.sinks.io.stdout": ["StdoutSink"],
    "agora.sources.file.parquet": ["ParquetSource"],
}


def test_compat_import_paths_re_export_the_facade_objects():
    import importlib

    for module_name, names in COMPAT_MODULES.items():
        module = importlib.import_module(module_name)
        assert set(names) <= set(module.__all__), module_name
        for name in module.__all__:
            assert getattr(module, name) is getattr(agora, name), (module_name, name)


def test_all_is_pinned_and_sorted():
    assert set(agora.__all__) == EXPECTED
    assert list(agora.__all__) == sorted(agora.__all__)


def test_every_name_resolves():
    for name in agora.__all__:
        assert getattr(agora, name) is not None, name


def test_version():
    assert agora.__version__ == "0.3.0"


def test_policy_enums_are_str_enums_with_spec_values():
    from enum import StrEnum
    for enum in (agora.FailurePolicy, agora.DLQFailurePolicy, agora.CheckpointFailurePolicy, agora.DataPlane):
        assert issubclass(enum, StrEnum)
    assert agora.FailurePolicy("fail_closed") is agora.FailurePolicy.FAIL_CLOSED
    assert agora.DLQFailurePolicy("raise") is agora.DLQFailurePolicy.RAISE
    assert [p.value for p in agora.DataPlane] == ["python_rows", "python_batches", "arrow_batches"]


def test_error_hierarchy():
    for err in (agora.PipelineError, agora.ProcessBatchError, agora.CheckpointError):
        assert issubclass(err, agora.AgoraError)


def test_every_error_class_is_in_the_tree_and_exported():
    import inspect

    import agora.errors as errors

    defined = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException)
               and obj.__module__ == "agora.errors"}
    assert defined == set(errors.__all__)
    for name in defined:
        assert getattr(agora, name) is getattr(errors, name), name
        assert issubclass(getattr(errors, name), agora.AgoraError), name
        assert name in errors.__doc__, f"{name} is missing from the tree drawn in the docstring"
    assert issubclass(agora.ProcessPoolBrokenError, agora.ProcessBatchError)


def test_dlq_error_moved_into_the_tree_and_stays_importable_from_stores():
    from agora.stores import DLQError
    from agora.stores.dlq import DLQError as FromModule

    assert DLQError is FromModule is agora.DLQError
    assert issubclass(agora.DLQError, agora.AgoraError)


PUBLIC_SUBMODULES = ("errors", "protocols", "sources", "sinks", "middleware", "stores",
                     "process")


def test_public_submodules_are_documented_and_pin_their_names():
    import importlib

    for name in PUBLIC_SUBMODULES:
        assert f"agora.{name}" in agora.__doc__, name
        module = importlib.import_module(f"agora.{name}")
        assert list(module.__all__) == sorted(module.__all__), name
        for attr in module.__all__:
            assert getattr(module, attr) is not None, f"agora.{name}.{attr}"


def test_state_and_key_enums_share_one_base():
    from enum import StrEnum

    from agora.process.handles import PoolState
    from agora.sinks.base import SinkState
    from agora.sources._builtin import SourceState

    for enum in (PoolState, SinkState, SourceState, agora.DLQStage, agora.Lane,
                 agora.WriterKind, agora.MiddlewareKind, agora.Outcome):
        assert issubclass(enum, StrEnum), enum
    assert [s.value for s in agora.DLQStage] == [
        "source_stream", "source_record", "middleware", "batch_middleware", "sink_write"]


def test_py_typed_ships():
    from pathlib import Path
    assert (Path(agora.__file__).parent / "py.typed").exists()
