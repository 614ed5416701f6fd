"""0.3.0's DLQ sink base class and record timestamp: ``DLQSink`` subclasses get
``replay()`` / ``acknowledge()``, ``isinstance`` still checks the shape the engine drives,
and ``DLQRecord.created_at`` is an aware datetime stored as ISO text."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from agora import (
    DeliveryConfig,
    DLQRecord,
    DLQSink,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Pipeline,
)
from agora.cli import main
from agora.core import dlq as core_dlq
from agora.stores import JsonLinesDLQSink, SQLiteDLQSink, read_dlq


def dead(**changes: Any) -> DLQRecord:
    fields: dict[str, Any] = dict(
        pipeline_id="orders", run_id="run-1", stage="sink_write", error_type="ValueError",
        error_message="bad row", record={"id": 1}, checkpoint={"line": 1},
    )
    fields.update(changes)
    return DLQRecord(**fields)


class CollectingDLQ(DLQSink):
    """A DLQ written the 0.3.0 way: a DLQSink subclass with write(), no write_batch()."""

    sink_name = "collecting_dlq"

    def __init__(self) -> None:
        self.records: list[DLQRecord] = []

    async def open(self) -> None:
        return None

    async def write(self, record: DLQRecord) -> None:
        self.records.append(record)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- DLQSink as a base class --------------------------------------------------------------------


def test_subclass_replay_counts_one_more_attempt_and_keeps_every_other_field() -> None:
    stamp = dt.datetime(2026, 5, 22, 12, 0, tzinfo=dt.UTC)
    rec = dead(attempt=2, max_attempts=5, created_at=stamp, original_record={"id": "raw"},
               processed_record={"id": 1, "x": 2}, sink="warehouse")
    again = asyncio.run(CollectingDLQ().replay(rec))
    assert again is not rec and rec.attempt == 2  # a new record; the old one is unchanged
    assert again.attempt == 3
    assert again == dead(attempt=3, max_attempts=5, created_at=stamp,
                         original_record={"id": "raw"}, processed_record={"id": 1, "x": 2},
                         sink="warehouse")
    assert "replay" in DLQSink.__dict__ and "acknowledge" in DLQSink.__dict__


def test_subclass_acknowledge_is_harmless_and_replay_refuses_a_non_record() -> None:
    sink = CollectingDLQ()
    assert asyncio.run(sink.acknowledge(dead())) is None
    with pytest.raises(TypeError, match=r"'collecting_dlq': replay\(\) takes a DLQRecord; got dict"):
        asyncio.run(sink.replay({"id": 1}))  # type: ignore[arg-type]


def test_isinstance_checks_the_shape_the_engine_drives() -> None:
    assert isinstance(MemorySink(), DLQSink)  # no ancestry needed: a BaseSink has the shape
    assert isinstance(SQLiteDLQSink("unused.db"), DLQSink)

    class Shaped:
        sink_name = "shaped"

        async def open(self) -> None: ...
        async def write_batch(self, records: Any) -> None: ...
        async def flush(self) -> None: ...
        async def close(self) -> None: ...

    class NoFlush:
        sink_name = "no_flush"

        async def open(self) -> None: ...
        async def write_batch(self, records: Any) -> None: ...
        async def close(self) -> None: ...

    assert isinstance(Shaped(), DLQSink)
    assert not isinstance(NoFlush(), DLQSink)
    assert not isinstance("dlq.db", DLQSink)
    assert isinstance(CollectingDLQ(), DLQSink)  # a subclass, by ancestry
    assert core_dlq.DLQSink is DLQSink
    with pytest.raises(TypeError, match="DeliveryConfig.dlq must be a DLQ sink"):
        DeliveryConfig(dlq=NoFlush())  # type: ignore[arg-type]


def test_a_subclass_with_write_only_captures_the_failed_records() -> None:
    dlq = CollectingDLQ()

    def boom(row: dict[str, int]) -> dict[str, int]:
        if row["id"] == 2:
            raise ValueError("two is bad")
        return row

    out = MemorySink()
    summary = asyncio.run(
        Pipeline(IterableSource([{"id": 1}, {"id": 2}, {"id": 3}]), id="orders")
        .pipe(MapMiddleware(boom, name="boom"))
        .build(out, config=DeliveryConfig(dlq=dlq)).run()
    )
    assert out.records == [{"id": 1}, {"id": 3}]
    assert summary.records_errored == 1
    assert [(r.stage, r.record, r.error_message) for r in dlq.records] == [
        ("middleware", {"id": 2}, "two is bad")]


# -- created_at ---------------------------------------------------------------------------------


def test_created_at_defaults_to_now_as_iso_text() -> None:
    before = dt.datetime.now(dt.UTC)
    rec = dead()
    after = dt.datetime.now(dt.UTC)
    assert isinstance(rec.created_at, str)  # what third-party DLQ sinks store as they find it
    assert before <= rec.created_at_datetime <= after
    assert rec.to_dict()["created_at"] == rec.created_at


def test_a_datetime_given_is_kept_and_stored_as_iso_text() -> None:
    stamp = dt.datetime(2026, 5, 22, 12, 0, tzinfo=dt.UTC)
    rec = dead(created_at=stamp)
    assert rec.created_at == stamp and rec.created_at_datetime == stamp
    assert rec.to_dict()["created_at"] == "2026-05-22T12:00:00+00:00"
    naive = dead(created_at=dt.datetime(2026, 1, 2, 3, 4, 5))
    assert naive.created_at_text == "2026-01-02T03:04:05+00:00"  # taken as UTC
    assert dead(created_at="2026-12-05T10:00:01+02:00").created_at_datetime == dt.datetime(
        2026, 12, 5, 8, 0, 1, tzinfo=dt.UTC)


def test_created_at_that_is_no_time_is_refused_naming_the_field() -> None:
    with pytest.raises(TypeError, match="created_at must be an ISO 8601 string or a datetime; "
                                        "got int"):
        dead(created_at=1_700_000_000)
    with pytest.raises(ValueError, match="created_at is not an ISO 8601 time: 'yesterday'.*"
                                         "read created_at_text instead"):
        dead(created_at="yesterday").created_at_datetime  # noqa: B018


@pytest.mark.parametrize("name", ["dlq.db", "dlq.jsonl"])
def test_created_at_survives_a_round_trip_through_either_dlq_file(tmp_path: Path,
                                                                  name: str) -> None:
    path = tmp_path / name
    stamp = dt.datetime(2026, 5, 22, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    sink: Any = SQLiteDLQSink(path) if name.endswith(".db") else JsonLinesDLQSink(path)

    async def scenario() -> None:
        await sink.open()
        await sink.write(dead(created_at=stamp))
        await sink.close()

    asyncio.run(scenario())
    [back] = read_dlq(path)
    assert back.created_at == stamp.isoformat() and back.created_at_datetime == stamp
    assert back.created_at_datetime.utcoffset() == dt.timedelta(hours=2)
    assert back == dead(created_at=stamp.isoformat(), source="")  # no source given: ""


# -- details ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dlq.db", "dlq.jsonl"])
def test_details_are_stored_and_read_back_by_either_dlq_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    sink: Any = SQLiteDLQSink(path) if name.endswith(".db") else JsonLinesDLQSink(path)
    facts = {"failure": {"classification": "unknown", "alert_severity": "error"}}

    async def scenario() -> None:
        await sink.open()
        await sink.write(dead(details=facts))
        await sink.write(dead(record={"id": 2}))
        await sink.close()

    asyncio.run(scenario())
    with_details, without = read_dlq(path)
    assert with_details.details == facts and without.details is None
    assert "details" not in dead().to_dict()  # stored only when set


def test_details_json_cannot_hold_are_stored_flagged() -> None:
    data = dead(details={"seen": {1, 2}}).to_dict()
    assert data["details"]["seen"]["__agora_unserialisable__"] is True
    assert data["details"]["seen"]["type"] == "set"
    assert data["round_trippable"] is False


def test_details_that_are_not_a_dict_are_refused() -> None:
    with pytest.raises(TypeError, match=r"DLQRecord.details must be a dict .* got list"):
        dead(details=["a"])


def test_dlq_list_prints_created_at_as_iso_text(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dlq.jsonl"
    path.write_text(json.dumps(dead(created_at="2026-12-05T10:00:01+00:00").to_dict()) + "\n")
    path.chmod(0o600)
    assert main(["dlq", "list", str(path)]) == 0
    assert "2026-12-05T10:00:01+00:00  sink_write" in capsys.readouterr().out
