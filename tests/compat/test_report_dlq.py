"""``DLQRecord`` carries 0.3.0's replay bookkeeping (``original_record``, ``attempt``,
``max_attempts``, ``replay_payload()``) without changing what Agora stores for records
that do not use it."""

from __future__ import annotations

import json

import pytest

from agora import DLQRecord

BASE = dict(pipeline_id="p", run_id="r", error_type="E", error_message="m", source="src",
            checkpoint=3)


def _rec(**fields) -> DLQRecord:
    return DLQRecord(**{"stage": "sink_write", "record": {"raw": 1}, **BASE, **fields})


def test_defaults_are_first_capture_with_no_bound_and_no_separate_original():
    rec = _rec()
    assert (rec.attempt, rec.max_attempts, rec.original_record) == (0, None, None)


def test_replay_payload_pipeline_mode_prefers_the_original_record():
    rec = _rec(record={"raw": "compat"}, original_record={"raw": "source"},
               processed_record={"normalized": True})
    assert rec.replay_payload(mode="pipeline") == {"raw": "source"}
    assert rec.replay_payload() == {"raw": "source"}  # pipeline is the default
    assert rec.replay_payload(mode="sink") == {"normalized": True}


def test_replay_payload_falls_back_to_record_when_the_others_are_unset():
    rec = _rec(record={"raw": 7})
    assert rec.replay_payload(mode="pipeline") == {"raw": 7}
    assert rec.replay_payload(mode="sink") == {"raw": 7}


def test_replay_payload_rejects_an_unknown_mode_by_name():
    with pytest.raises(ValueError, match=r"mode must be 'pipeline' or 'sink'; got 'disk'"):
        _rec().replay_payload(mode="disk")


@pytest.mark.parametrize("attempt", [-1, 1.5, True, "2"])
def test_attempt_must_be_a_non_negative_int(attempt):
    with pytest.raises(ValueError, match="DLQRecord.attempt must be an int >= 0"):
        _rec(attempt=attempt)


@pytest.mark.parametrize("bound", [0, -3, False, 2.0])
def test_max_attempts_must_be_none_or_a_positive_int(bound):
    with pytest.raises(ValueError, match="DLQRecord.max_attempts must be None"):
        _rec(max_attempts=bound)


def test_unset_bookkeeping_is_not_stored_so_existing_files_read_the_same():
    data = _rec().to_dict()
    assert not {"attempt", "max_attempts", "original_record"} & set(data)


def test_set_bookkeeping_round_trips_through_json():
    rec = _rec(attempt=2, max_attempts=5, original_record={"raw": "source"})
    back = DLQRecord.from_dict(json.loads(rec.to_json()))
    assert (back.attempt, back.max_attempts, back.original_record) == (
        2, 5, {"raw": "source"})
    assert back == rec


def test_an_original_record_json_cannot_hold_is_stored_flagged_not_dropped():
    rec = _rec(original_record={"handle": object()})
    data = rec.to_dict()
    assert "original_record" in data and data["round_trippable"] is False
    json.dumps(data)


def test_code_may_leave_out_source_and_checkpoint_but_never_the_record():
    rec = DLQRecord(pipeline_id="p", run_id="r", stage="middleware", error_type="E",
                    error_message="m", record={"k": 1})
    assert (rec.source, rec.checkpoint) == (None, None)
    assert rec.to_dict()["source"] == ""  # stores keep a text column
    with pytest.raises(TypeError, match="DLQRecord needs record="):
        DLQRecord(pipeline_id="p", run_id="r", stage="middleware", error_type="E",
                  error_message="m")


def test_positional_construction_keeps_its_order():
    rec = DLQRecord("p", "r", "middleware", "E", "m", "src", 4, {"k": 1})
    assert (rec.source, rec.checkpoint, rec.record) == ("src", 4, {"k": 1})


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_a_record_without_a_source_is_stored_by_both_dlq_files(tmp_path, kind):
    import asyncio

    from agora import JsonLinesDLQSink, SQLiteDLQSink, read_dlq

    path = tmp_path / ("dlq.db" if kind == "sqlite" else "dlq.jsonl")
    sink = SQLiteDLQSink(path) if kind == "sqlite" else JsonLinesDLQSink(path)
    rec = DLQRecord(pipeline_id="p", run_id="r", stage="middleware", error_type="E",
                    error_message="m", record={"k": 1})

    async def store() -> None:
        await sink.open()
        await sink.write(rec)
        await sink.flush()
        await sink.close()

    asyncio.run(store())
    [back] = list(read_dlq(path))
    assert back.record == {"k": 1} and back.source == ""


def test_the_json_lines_dlq_keeps_the_replay_bookkeeping(tmp_path):
    import asyncio

    from agora import JsonLinesDLQSink, read_dlq

    path = tmp_path / "dlq.jsonl"
    sink = JsonLinesDLQSink(path)
    rec = _rec(attempt=1, max_attempts=3, original_record={"raw": "source"})

    async def store() -> None:
        await sink.open()
        await sink.write(rec)
        await sink.flush()
        await sink.close()

    asyncio.run(store())
    [back] = list(read_dlq(path))
    assert (back.attempt, back.max_attempts, back.original_record) == (1, 3, {"raw": "source"})


def test_masking_record_with_with_fields_leaves_no_unmasked_original_behind(tmp_path) -> None:
    """``original_record`` defaults to ``record`` itself; a redactor that masks ``record``
    with ``with_fields`` masks what is stored as the original too."""
    import asyncio

    from agora.stores import JsonLinesDLQSink, read_dlq

    secret = {"id": 1, "token": "secret"}
    rec = DLQRecord(pipeline_id="p", run_id="r", stage="middleware", error_type="E",
                    error_message="m", record=secret, original_record=secret)  # as the engine
    masked = rec.with_fields(record={"id": 1, "token": "[masked]"})
    assert masked.original_record == {"id": 1, "token": "[masked]"}
    assert "secret" not in masked.to_json()
    kept = rec.with_fields(record={"id": 1}, original_record={"id": 1, "raw": True})
    assert kept.original_record == {"id": 1, "raw": True}  # given apart: kept as given

    async def roundtrip() -> list[DLQRecord]:
        dlq = JsonLinesDLQSink(tmp_path / "dlq.jsonl")
        await dlq.open()
        await dlq.write(masked)
        await dlq.close()
        return list(read_dlq(tmp_path / "dlq.jsonl"))

    (back,) = asyncio.run(roundtrip())
    assert back.record == {"id": 1, "token": "[masked]"} and back.original_record is None
    assert "secret" not in (tmp_path / "dlq.jsonl").read_text()
