"""The public facade is exactly what SPEC §1 names."""

from __future__ import annotations

import agora

EXPECTED = {
    "AgoraError", "ArrowBatchMiddleware", "ArrowBatchSource", "ArrowCsvSource",
    "ArrowFilterMiddleware", "ArrowJsonLinesSource", "ArrowMapMiddleware",
    "ArrowProcessBatchMiddleware", "BaseSink", "BaseSource", "BatchFilterMiddleware",
    "BatchMapMiddleware", "BatchMiddleware", "BoundPipeline", "Checkpoint", "CheckpointError",
    "CheckpointFailurePolicy", "CheckpointStore", "CsvSink", "CsvSource", "DLQFailurePolicy",
    "DLQRecord", "DataPlane", "DeliveryConfig", "FailurePolicy", "FilterMiddleware",
    "InMemoryCheckpointStore", "IterableBatchSource", "IterableSource", "JsonLinesDLQSink",
    "JsonLinesSink", "JsonLinesSource", "MapMiddleware", "MemorySink", "Middleware", "NullSink",
    "ParquetSink", "ParquetSource", "Pipeline", "PipelineError", "PipelineExplain",
    "PipelineRunSummary", "ProcessBatchError", "ProcessBatchMiddleware", "SQLiteCheckpointStore",
    "SQLiteDLQSink", "SinkCapabilities", "SinkDataPlaneSpec", "SinkFailurePolicy", "SinkFanOut",
    "SinkRouter", "SourceDataPlaneSpec", "StdoutSink", "WriteResult", "__version__",
}


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


def test_py_typed_ships():
    from pathlib import Path
    assert (Path(agora.__file__).parent / "py.typed").exists()
