"""``PipelineError`` built by user code is plain (no stage unless given); every one Agora
raises names its stage — ``pipeline_build`` for the builder and planning, ``run`` for
a run — so a log line alone says which phase refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agora import (
    ArrowMapMiddleware,
    DeliveryConfig,
    IterableSource,
    MemorySink,
    Middleware,
    MiddlewareContext,
    Pipeline,
    PipelineError,
    SQLiteDLQSink,
)
from tests.runtime.doubles import FlakySink


def test_an_error_built_by_user_code_is_plain_with_every_field_none() -> None:
    err = PipelineError("plain error")
    assert str(err) == "plain error" and err.message == "plain error"
    assert (err.stage, err.pipeline_id, err.run_id, err.source_name, err.sink_name,
            err.checkpoint) == (None, None, None, None, None, None)
    assert str(PipelineError("x", stage="sink")) == "x [stage=sink]"


def test_builder_errors_name_the_build_stage() -> None:
    with pytest.raises(PipelineError, match=r"IterableSource.*\[stage=pipeline_build\]$"):
        Pipeline([1, 2])  # type: ignore[arg-type]
    with pytest.raises(PipelineError) as info:
        Pipeline(IterableSource([1]), id="")
    assert info.value.stage == "pipeline_build"
    with pytest.raises(PipelineError) as info:
        Pipeline(IterableSource([1])).pipe(len)  # type: ignore[arg-type]
    assert info.value.stage == "pipeline_build"
    with pytest.raises(PipelineError) as info:
        Pipeline(IterableSource([1])).route(MemorySink())  # type: ignore[arg-type]
    assert info.value.stage == "pipeline_build"
    with pytest.raises(PipelineError) as info:
        Pipeline(IterableSource([1])).build(MemorySink(), delivery={})  # type: ignore[arg-type]
    assert info.value.stage == "pipeline_build"


def test_a_planning_error_names_the_build_stage_in_explain_and_run() -> None:
    bound = Pipeline(IterableSource([{"a": 1}])).pipe(
        ArrowMapMiddleware(lambda b: b, name="arrowy")).build(MemorySink())
    for attempt in (bound.explain, bound.run_sync):
        with pytest.raises(PipelineError) as info:
            attempt()
        assert info.value.stage == "pipeline_build" and "'arrowy'" in str(info.value)


def test_a_user_error_raised_inside_a_run_gets_the_run_stage_and_context() -> None:
    class Refuses(Middleware[Any, Any]):
        name = "refuses"

        async def process(self, record: Any, ctx: MiddlewareContext) -> Any:
            raise PipelineError("bad state")

    sink = MemorySink()
    bound = Pipeline(IterableSource([1]), id="p").pipe(Refuses()).build(sink)
    with pytest.raises(PipelineError) as info:
        bound.run_sync()
    err = info.value
    assert (err.stage, err.pipeline_id, err.source_name) == ("run", "p", "iterable")
    assert err.run_id is not None and str(err).startswith("bad state [stage=run, pipeline=p")
    assert sink.records == []


def test_a_planning_error_of_a_replay_names_the_build_stage(tmp_path: Path) -> None:
    dlq = tmp_path / "dlq.db"
    Pipeline(IterableSource([{"a": 1}, {"a": 2}]), id="p").build(
        FlakySink(fail=lambda r: r["a"] == 2),
        delivery=DeliveryConfig(dlq=SQLiteDLQSink(dlq))).run_sync()
    invalid = Pipeline(IterableSource([]), id="p").pipe(
        ArrowMapMiddleware(lambda b: b, name="arrowy")).build(MemorySink())
    with pytest.raises(PipelineError) as info:
        asyncio.run(invalid.replay(dlq))
    assert info.value.stage == "pipeline_build" and "'arrowy'" in str(info.value)
