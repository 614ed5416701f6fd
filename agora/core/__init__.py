"""Import paths kept for plugins written against 0.3.0: the planes and the core contracts."""

from __future__ import annotations

from agora import (
    AgoraError,
    BaseSink,
    BaseSource,
    BoundPipeline,
    Checkpoint,
    CheckpointFailurePolicy,
    CheckpointStore,
    DataPlane,
    DLQFailurePolicy,
    DLQRecord,
    DLQSink,
    FilterMiddleware,
    InMemoryCheckpointStore,
    IterableSource,
    MapMiddleware,
    Middleware,
    Pipeline,
    PipelineError,
    PipelineExplain,
    PipelineRunSummary,
    SinkDataPlaneSpec,
    SinkFanOut,
    SinkRouter,
    SourceDataPlaneSpec,
    SQLiteCheckpointStore,
    WriteResult,
)

__all__ = ["AgoraError", "BaseSink", "BaseSource", "BoundPipeline", "Checkpoint", "CheckpointFailurePolicy", "CheckpointStore", "DLQFailurePolicy", "DLQRecord", "DLQSink", "DataPlane", "FilterMiddleware", "InMemoryCheckpointStore", "IterableSource", "MapMiddleware", "Middleware", "Pipeline", "PipelineError", "PipelineExplain", "PipelineRunSummary", "SQLiteCheckpointStore", "SinkDataPlaneSpec", "SinkFanOut", "SinkRouter", "SourceDataPlaneSpec", "WriteResult"]
