"""``DLQRecord.stage`` accepts a caller's own stage name next to the four the engine writes,
stores it as given, and refuses an empty or non-string stage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agora import DLQRecord, JsonLinesDLQSink, SQLiteDLQSink, read_dlq
from agora.records import DLQStage
from agora.runtime.replay_report import select_entries
from agora.stores.dlq_state import DLQEntry

BASE = dict(pipeline_id="p", run_id="r", error_type="E", error_message="m", source="src",
            checkpoint=None, record={"id": 1})


def test_engine_stage_string_becomes_the_enum_member() -> None:
    rec = DLQRecord(stage="sink_write", **BASE)
    assert rec.stage is DLQStage.SINK_WRITE


def test_custom_stage_is_stored_as_given() -> None:
    rec = DLQRecord(stage="sink", **BASE)
    assert rec.stage == "sink" and not isinstance(rec.stage, DLQStage)
    assert rec.to_dict()["stage"] == "sink"


@pytest.mark.parametrize("stage", ["", "   ", None, 3])
def test_empty_or_non_string_stage_is_refused(stage: object) -> None:
    with pytest.raises(ValueError, match="DLQRecord.stage must be a non-empty string"):
        DLQRecord(stage=stage, **BASE)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_custom_stage_round_trips_and_filters(tmp_path: Path, kind: str) -> None:
    path = tmp_path / ("dlq.jsonl" if kind == "jsonl" else "dlq.db")
    sink = JsonLinesDLQSink(path) if kind == "jsonl" else SQLiteDLQSink(path)
    records = [DLQRecord(stage="transform", **BASE),
               DLQRecord(stage="middleware", **{**BASE, "record": {"id": 2}})]

    async def write() -> None:
        await sink.open()
        await sink.write_batch(records)
        await sink.close()

    asyncio.run(write())
    got = read_dlq(path, stage="transform")
    assert [(r.stage, r.record) for r in got] == [("transform", {"id": 1})]
    assert [r.stage for r in read_dlq(path)] == ["transform", DLQStage.MIDDLEWARE]


def test_replay_sends_a_custom_stage_through_the_whole_pipeline() -> None:
    entries = [DLQEntry(1, DLQRecord(stage="transform", **BASE)),
               DLQEntry(2, DLQRecord(stage="source_record", **BASE))]
    plan = select_entries(entries, pipeline_id="p", stage=None, include_replayed=False)
    assert [e.entry_id for e in plan.to_send] == [1]  # raw source records stay unreplayable
    assert plan.to_send[0].record.replay_payload() == {"id": 1}
