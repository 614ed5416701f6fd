"""``PipelineError`` carries where it happened (stage, pipeline, run, source, sink,
checkpoint) and says so in ``str()``; ``with_context`` adds context without mutating."""

from __future__ import annotations

import pytest

from agora import IterableSource, MemorySink, Pipeline, PipelineError
from agora.middleware.builtins import ArrowMapMiddleware


def test_str_includes_the_stage_of_a_planning_error():
    bound = Pipeline(IterableSource([{"id": 1}]), id="p").pipe(
        ArrowMapMiddleware(lambda b: b, name="arrowy")).build(MemorySink())
    with pytest.raises(PipelineError) as info:
        bound.explain()
    assert info.value.stage == "pipeline_build"
    assert str(info.value).endswith("[stage=pipeline_build]")
    assert "'arrowy'" in str(info.value)


def test_str_lists_every_context_field_that_is_set():
    err = PipelineError("boom", stage="sink", pipeline_id="p1", run_id="r1",
                        source_name="src", sink_name="out", checkpoint={"offset": 4})
    assert str(err) == ("boom [stage=sink, pipeline=p1, run=r1, source=src, sink=out, "
                        "checkpoint={'offset': 4}]")
    assert (err.pipeline_id, err.run_id, err.source_name, err.sink_name) == (
        "p1", "r1", "src", "out")


def test_without_any_context_str_is_the_message():
    assert str(PipelineError("plain", stage=None)) == "plain"
    assert PipelineError("plain").message == "plain"


def test_with_context_merges_and_leaves_the_original_unchanged():
    cause = ValueError("root")
    try:
        raise PipelineError("base", pipeline_id="p1", stage="source_stream") from cause
    except PipelineError as exc:
        original = exc
    enriched = original.with_context(run_id="r1", stage="sink")
    assert (enriched.pipeline_id, enriched.run_id, enriched.stage) == ("p1", "r1", "sink")
    assert (original.run_id, original.stage) == (None, "source_stream")
    assert enriched.__cause__ is cause and enriched.message == "base"
    assert type(enriched) is PipelineError


def test_with_context_rejects_an_unknown_field_by_name():
    with pytest.raises(TypeError, match=r"fields must be among .*got \['pipeline'\]"):
        PipelineError("x").with_context(pipeline="p")
