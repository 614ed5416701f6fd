"""BoundPipeline.replay: additive output, idempotence, one entry per failing record,
dry runs, foreign pipelines and records that cannot be replayed as rows."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora import (
    ArrowBatchSource,
    CsvSink,
    DeliveryConfig,
    IterableSource,
    JsonLinesSink,
    MapMiddleware,
    MemorySink,
    ParquetSink,
    Pipeline,
    SyncSQLiteCheckpointStore,
)
from agora.errors import CheckpointError, PipelineError
from agora.records import DLQRecord, DLQStage
from agora.stores import DLQError, JsonLinesDLQSink, SQLiteDLQSink, read_dlq
from agora.stores.dlq_state import open_ledger, sidecar_path
from agora.stores.dlq_schema import SCHEMA_VERSION

#: ids the "bug" rejects; tests change it to simulate a fix (or a bug that stays).
POISON: set[int] = set()


def check(row: dict[str, Any]) -> dict[str, Any]:
    if row["id"] in POISON:
        raise ValueError(f"id {row['id']} is poison")
    return row


@pytest.fixture(autouse=True)
def poison() -> Any:
    POISON.clear()
    POISON.update({3, 7})
    yield POISON
    POISON.clear()


@pytest.fixture(params=["dlq.db", "dlq.jsonl"])
def dlq_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_dlq(path: Path) -> Any:
    return SQLiteDLQSink(path) if path.suffix == ".db" else JsonLinesDLQSink(path)


def job(d: Path, dlq_name: str, *, pid: str = "orders", n: int = 10,
        redactor: Callable[[DLQRecord], DLQRecord] | None = None, **delivery: Any) -> Any:
    """A job as a user writes it, built fresh each time (as in a new process)."""
    rows = [{"id": i, "name": f"n{i}"} for i in range(n)]
    return (
        Pipeline(IterableSource(rows, name="orders"), id=pid)
        .pipe(MapMiddleware(check, name="check"))
        .fan_out(
            [CsvSink(d / "out.csv"), ParquetSink(d / "out.parquet"),
             JsonLinesSink(d / "out.jsonl")],
            delivery=DeliveryConfig(checkpoint=SyncSQLiteCheckpointStore(d / "ckpt.db"),
                                    dlq=new_dlq(d / dlq_name), dlq_redactor=redactor,
                                    **delivery),
        )
    )


def output_ids(d: Path) -> dict[str, list[int]]:
    with open(d / "out.csv", newline="") as fh:
        from_csv = [int(float(r["id"])) for r in csv.DictReader(fh)]
    return {
        "csv": from_csv,
        "parquet": pq.read_table(d / "out.parquet").column("id").to_pylist(),
        "jsonl": [json.loads(line)["id"] for line in (d / "out.jsonl").read_text().splitlines()],
    }


def replay(bound: Any, dlq: Path, **kwargs: Any) -> Any:
    return asyncio.run(bound.replay(dlq, **kwargs))


def entries(dlq: Path) -> list[Any]:
    ledger = open_ledger(dlq, writable=False)
    try:
        return ledger.entries()
    finally:
        ledger.close()


def test_replay_appends_to_existing_output_and_never_truncates(tmp_path: Path, dlq_name: str,
                                                               poison: set[int]) -> None:
    asyncio.run(job(tmp_path, dlq_name).run())
    before = output_ids(tmp_path)
    assert before["csv"] == before["parquet"] == before["jsonl"] == [0, 1, 2, 4, 5, 6, 8, 9]
    poison.clear()  # the bug is fixed
    report = replay(job(tmp_path, dlq_name), tmp_path / dlq_name)
    assert (report.sent, report.handled, report.failed_again, report.ok) == (2, 2, 0, True)
    assert report.records_written == 2
    after = output_ids(tmp_path)
    for fmt in ("csv", "parquet", "jsonl"):
        assert after[fmt] == before[fmt] + [3, 7], fmt
    assert all(e.replayed and e.replay_run_id == report.run_id for e in entries(
        tmp_path / dlq_name))


def test_second_replay_sends_nothing_unless_asked(tmp_path: Path, dlq_name: str,
                                                  poison: set[int]) -> None:
    asyncio.run(job(tmp_path, dlq_name).run())
    poison.clear()
    replay(job(tmp_path, dlq_name), tmp_path / dlq_name)
    again = replay(job(tmp_path, dlq_name), tmp_path / dlq_name)
    assert (again.sent, again.already_replayed, again.ok) == (0, 2, True)
    assert output_ids(tmp_path)["jsonl"] == [0, 1, 2, 4, 5, 6, 8, 9, 3, 7]
    forced = replay(job(tmp_path, dlq_name), tmp_path / dlq_name, include_replayed=True)
    assert forced.sent == 2
    assert output_ids(tmp_path)["jsonl"][-2:] == [3, 7]
    assert len(output_ids(tmp_path)["jsonl"]) == 12


def test_record_that_fails_again_updates_its_own_entry(tmp_path: Path, dlq_name: str,
                                                        poison: set[int]) -> None:
    asyncio.run(job(tmp_path, dlq_name).run())
    poison.discard(3)
    poison.add(70)  # unrelated; 7 still fails, now for another reason below

    def stricter(row: dict[str, Any]) -> dict[str, Any]:
        if row["id"] == 7:
            raise KeyError("still broken")
        return row

    bound = job(tmp_path, dlq_name)
    bound.pipeline.middleware = (MapMiddleware(stricter, name="check"),)
    report = replay(bound, tmp_path / dlq_name)
    assert (report.sent, report.handled, report.failed_again, report.ok) == (2, 1, 1, False)
    stored = entries(tmp_path / dlq_name)
    assert len(stored) == 2  # no copy was added
    by_id = {e.record.record["id"]: e for e in stored}
    assert by_id[3].replayed and by_id[3].attempts == 1
    seven = by_id[7]
    assert not seven.replayed
    assert seven.attempts == 2
    assert (seven.last_error_type, seven.last_error_message) == ("KeyError", "'still broken'")
    assert seven.record.error_message == "id 7 is poison"  # the first failure is kept
    # the next replay re-sends only what is still pending
    again = replay(bound, tmp_path / dlq_name)
    assert (again.sent, again.failed_again, again.already_replayed) == (1, 1, 1)
    assert {e.record.record["id"]: e.attempts for e in entries(tmp_path / dlq_name)} == {
        3: 1, 7: 3}


def test_dry_run_lists_and_changes_nothing(tmp_path: Path, dlq_name: str,
                                           poison: set[int]) -> None:
    asyncio.run(job(tmp_path, dlq_name).run())
    poison.clear()
    dlq = tmp_path / dlq_name
    # out.parquet is a dataset folder: its files are compared one by one.
    outputs = {p.name: p.read_bytes() for p in tmp_path.glob("out.*") if p.is_file()}
    outputs |= {p.name: p.read_bytes() for p in tmp_path.glob("out.*/*")}
    rows_before = [(e.entry_id, e.attempts, e.replayed) for e in entries(dlq)]
    report = replay(job(tmp_path, dlq_name), dlq, dry_run=True)
    assert report.dry_run and report.sent == 0
    assert [w["error_type"] for w in report.would_send] == ["ValueError", "ValueError"]
    assert "would send 2 record(s)" in str(report)
    assert ({p.name: p.read_bytes() for p in tmp_path.glob("out.*") if p.is_file()}
            | {p.name: p.read_bytes() for p in tmp_path.glob("out.*/*")}) == outputs
    assert [(e.entry_id, e.attempts, e.replayed) for e in entries(dlq)] == rows_before
    assert not sidecar_path(dlq).exists()


def test_records_of_other_pipelines_are_skipped_and_reported(tmp_path: Path, dlq_name: str,
                                                             poison: set[int]) -> None:
    asyncio.run(job(tmp_path, dlq_name, pid="other").run())
    (tmp_path / "ckpt.db").unlink()
    asyncio.run(job(tmp_path, dlq_name, pid="orders", n=5).run())  # fails id 3 only
    poison.clear()
    report = replay(job(tmp_path, dlq_name, pid="orders"), tmp_path / dlq_name)
    assert report.sent == 1 and report.other_pipelines == {"other": 2}
    assert "skipped 2 record(s) of another pipeline 'other'" in str(report)
    assert [e.replayed for e in entries(tmp_path / dlq_name)] == [False, False, True]


def test_dlq_of_another_pipeline_only_is_refused(tmp_path: Path, dlq_name: str,
                                                 poison: set[int]) -> None:
    asyncio.run(job(tmp_path, dlq_name, pid="other").run())
    poison.clear()
    with pytest.raises(PipelineError, match=r"holds no record of pipeline 'orders', only of "
                                            r"'other' \(2\).*pipeline_id='other'"):
        replay(job(tmp_path, dlq_name, pid="orders"), tmp_path / dlq_name)
    chosen = replay(job(tmp_path, dlq_name, pid="orders"), tmp_path / dlq_name,
                    pipeline_id="other")
    assert chosen.sent == 2 and chosen.pipeline_id == "other"


def test_raw_lines_and_flagged_records_are_reported_and_left_unmarked(
    tmp_path: Path, dlq_name: str
) -> None:
    dlq = tmp_path / dlq_name

    async def seed() -> None:
        sink = new_dlq(dlq)
        await sink.open()
        base = dict(pipeline_id="orders", run_id="r1", error_type="E", error_message="m",
                    source="orders", checkpoint=1)
        await sink.write_batch([
            DLQRecord(stage="source_record", record="1,broken,csv", **base),
            DLQRecord(stage="middleware", record={"id": 1, "h": object()}, **base),
            DLQRecord(stage="middleware", record={"id": 2, "name": "ok"}, **base),
        ])
        await sink.close()

    asyncio.run(seed())
    POISON.clear()
    report = replay(job(tmp_path, dlq_name), dlq)
    assert report.sent == 1
    assert sum(report.not_replayable.values()) == 2
    assert any("source_record" in reason for reason in report.not_replayable)
    assert any("round_trippable" in reason for reason in report.not_replayable)
    assert "cannot replay 1 record(s): raw source input" in str(report)
    assert [e.replayed for e in entries(dlq)] == [False, False, True]


def test_stage_filter_keeps_working(tmp_path: Path, dlq_name: str) -> None:
    dlq = tmp_path / dlq_name

    async def seed() -> None:
        sink = new_dlq(dlq)
        await sink.open()
        base = dict(pipeline_id="orders", run_id="r1", error_type="E", error_message="m",
                    source="orders", checkpoint=1)
        await sink.write_batch([
            DLQRecord(stage="middleware", record={"id": 1, "name": "a"}, **base),
            DLQRecord(stage="sink_write", record={"id": 2, "name": "b"}, sink="s", **base),
        ])
        await sink.close()

    asyncio.run(seed())
    POISON.clear()
    report = replay(job(tmp_path, dlq_name), dlq, stage="sink_write")
    assert (report.sent, report.other_stages) == (1, 1)
    assert output_ids(tmp_path)["jsonl"] == [2]


def test_redactor_masks_the_latest_error_of_a_record_that_fails_again(
    tmp_path: Path, dlq_name: str
) -> None:
    def mask(rec: DLQRecord) -> DLQRecord:  # the message quotes the id: mask digits
        return rec.with_fields(error_message="".join(
            "#" if c.isdigit() else c for c in rec.error_message))

    asyncio.run(job(tmp_path, dlq_name, redactor=mask).run())
    report = replay(job(tmp_path, dlq_name, redactor=mask), tmp_path / dlq_name)
    assert report.failed_again == 2  # the bug is still there
    stored = entries(tmp_path / dlq_name)
    assert [e.record.error_message for e in stored] == ["id # is poison"] * 2
    assert [e.last_error_message for e in stored] == ["id # is poison"] * 2
    assert [e.record.record["id"] for e in stored] == [3, 7]  # records were not masked


def test_redactor_failure_during_replay_never_marks_the_record_replayed(
    tmp_path: Path, dlq_name: str
) -> None:
    asyncio.run(job(tmp_path, dlq_name).run())

    def broken(rec: DLQRecord) -> DLQRecord:
        raise RuntimeError("redactor bug")

    bound = job(tmp_path, dlq_name, redactor=broken, failure_policy="log_and_continue")
    report = replay(bound, tmp_path / dlq_name)
    assert report.failed_again == 2
    stored = entries(tmp_path / dlq_name)
    assert [e.replayed for e in stored] == [False, False]
    assert all(e.attempts == 2 and e.last_error_type == "ValueError" for e in stored)
    assert all("redactor failed" in (e.last_error_message or "") for e in stored)


def test_replay_into_an_arrow_pipeline(tmp_path: Path, dlq_name: str) -> None:
    dlq = tmp_path / dlq_name

    async def seed() -> None:
        sink = new_dlq(dlq)
        await sink.open()
        await sink.write_batch([
            DLQRecord(pipeline_id="arrow", run_id="r1", stage="sink_write", error_type="E",
                      error_message="m", source="t", checkpoint=1, record={"id": i, "v": 1.5},
                      sink="parquet:a.parquet")
            for i in range(3)
        ])
        await sink.close()

    asyncio.run(seed())
    table = pa.table({"id": [10, 11], "v": [0.5, 0.25]})
    bound = Pipeline(ArrowBatchSource(table), id="arrow").build(ParquetSink(tmp_path / "a.parquet"))
    asyncio.run(bound.run())
    report = replay(bound, dlq)
    assert report.sent == 3 and report.ok
    assert pq.read_table(tmp_path / "a.parquet").column("id").to_pylist() == [10, 11, 0, 1, 2]


def test_replay_of_a_missing_or_foreign_file_is_a_dlq_error(tmp_path: Path) -> None:
    bound = job(tmp_path, "dlq.db")
    with pytest.raises(DLQError, match="does not exist"):
        replay(bound, tmp_path / "missing.db")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DLQError, match="cannot tell the format"):
        replay(bound, tmp_path / "notes.txt")


def test_replay_migrates_a_version_1_sqlite_dlq(tmp_path: Path) -> None:
    dlq = tmp_path / "dlq.db"
    write_version_1_dlq(dlq, [{"id": 3, "name": "n3"}])
    report = replay(job(tmp_path, "dlq.db"), dlq, dry_run=True)
    assert len(report.would_send) == 1
    assert schema_version(dlq) == 1  # a dry run does not even migrate
    POISON.clear()
    report = replay(job(tmp_path, "dlq.db"), dlq)
    assert report.sent == 1 and report.ok
    assert schema_version(dlq) == SCHEMA_VERSION
    assert entries(dlq)[0].replayed


def schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(
            "SELECT value FROM agora_meta WHERE key = 'dlq.schema_version'").fetchone()[0])
    finally:
        conn.close()


def write_version_1_dlq(path: Path, records: list[dict[str, Any]]) -> None:
    """A DLQ file exactly as schema version 1 created it."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE agora_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO agora_meta VALUES ('dlq.schema_version', '1');"
        "CREATE TABLE agora_dlq (id INTEGER PRIMARY KEY AUTOINCREMENT, record_key TEXT UNIQUE,"
        " pipeline_id TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL,"
        " error_type TEXT NOT NULL, error_message TEXT NOT NULL, source TEXT NOT NULL,"
        " checkpoint TEXT NOT NULL, record TEXT NOT NULL, processed_record TEXT NOT NULL,"
        " middleware TEXT, sink TEXT, created_at TEXT NOT NULL, round_trippable INTEGER NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 1, last_run_id TEXT, last_seen_at TEXT);"
    )
    for i, rec in enumerate(records):
        conn.execute(
            "INSERT INTO agora_dlq (record_key, pipeline_id, run_id, stage, error_type,"
            " error_message, source, checkpoint, record, processed_record, middleware, sink,"
            " created_at, round_trippable) VALUES (?, 'orders', 'r1', 'middleware',"
            " 'ValueError', 'bad', 'orders', ?, ?, 'null', 'check', NULL, '2026-01-01', 1)",
            (f"k{i}:0", json.dumps(i), json.dumps(rec)),
        )
    conn.commit()
    conn.close()
    path.chmod(0o600)


def test_read_dlq_accepts_a_version_1_file(tmp_path: Path) -> None:
    dlq = tmp_path / "dlq.db"
    write_version_1_dlq(dlq, [{"id": 1}, {"id": 2}])
    assert [r.record for r in read_dlq(dlq)] == [{"id": 1}, {"id": 2}]
    assert schema_version(dlq) == 1


class DiskFullOnFlush(MemorySink):
    """Accepts writes; its ``fail_on``-th flush raises OSError (the replay run stops)."""

    def __init__(self, fail_on: int) -> None:
        super().__init__(name="flaky")
        self.fail_on = fail_on
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        if self.flushes == self.fail_on:
            raise OSError("No space left on device")
        await super().flush()


def test_replay_that_stops_keeps_what_it_handled_marked(tmp_path: Path, dlq_name: str,
                                                        poison: set[int]) -> None:
    poison.update(range(10))
    asyncio.run(job(tmp_path, dlq_name).run())
    assert len(entries(tmp_path / dlq_name)) == 10
    poison.clear()

    def target(sink: MemorySink) -> Any:
        rows = [{"id": i} for i in range(10)]
        return Pipeline(IterableSource(rows, name="orders"), id="orders").build(
            sink, delivery=DeliveryConfig(checkpoint_every=2))

    with pytest.raises(OSError, match="No space left"):
        replay(target(DiskFullOnFlush(fail_on=3)), tmp_path / dlq_name)
    assert [e.replayed for e in entries(tmp_path / dlq_name)] == [True] * 4 + [False] * 6
    rest = MemorySink(name="rest")
    report = replay(target(rest), tmp_path / dlq_name)
    assert (report.sent, report.already_replayed) == (6, 4)
    assert [r["id"] for r in rest.records] == [4, 5, 6, 7, 8, 9]


def test_jsonl_replay_state_torn_tail_is_ignored_and_damage_is_reported(
    tmp_path: Path, poison: set[int]
) -> None:
    dlq = tmp_path / "dlq.jsonl"
    asyncio.run(job(tmp_path, "dlq.jsonl").run())
    poison.clear()
    replay(job(tmp_path, "dlq.jsonl"), dlq)
    side = sidecar_path(dlq)
    assert side.stat().st_mode & 0o777 == 0o600
    good = side.read_bytes()
    side.write_bytes(good + b'{"line": 1, "dig')  # a torn event from a crash
    assert [e.replayed for e in entries(dlq)] == [True, True]
    assert replay(job(tmp_path, "dlq.jsonl"), dlq).sent == 0  # and the tail is cut on append
    side.write_bytes(b"not json\n" + good)
    with pytest.raises(DLQError, match=r"dlq.jsonl.replay, line 1 is damaged.*move it aside"):
        entries(dlq)


def test_jsonl_replay_state_of_a_replaced_dlq_does_not_apply(tmp_path: Path,
                                                             poison: set[int]) -> None:
    dlq = tmp_path / "dlq.jsonl"
    asyncio.run(job(tmp_path, "dlq.jsonl").run())
    poison.clear()
    replay(job(tmp_path, "dlq.jsonl"), dlq)
    lines = dlq.read_bytes().splitlines(keepends=True)
    dlq.write_bytes(lines[0].replace(b'"id": 3', b'"id": 33') + lines[1])  # line 1 changed
    assert [e.replayed for e in entries(dlq)] == [False, True]


def test_replay_is_refused_while_a_run_of_the_pipeline_holds_its_key(
    tmp_path: Path, dlq_name: str, poison: set[int]
) -> None:
    asyncio.run(job(tmp_path, dlq_name).run())
    poison.clear()
    before = output_ids(tmp_path)
    other_run = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    other_run.claim("orders")  # e.g. the nightly run, in another process
    try:
        with pytest.raises(CheckpointError, match="in use"):
            replay(job(tmp_path, dlq_name), tmp_path / dlq_name)
    finally:
        other_run.close()
    assert output_ids(tmp_path) == before
    assert not any(e.replayed for e in entries(tmp_path / dlq_name))
    assert replay(job(tmp_path, dlq_name), tmp_path / dlq_name).sent == 2  # free again


def seed_sink_failures(dlq: Path, ids: list[int], pid: str = "t") -> None:
    async def seed() -> None:
        sink = new_dlq(dlq)
        await sink.open()
        await sink.write_batch([
            DLQRecord(pipeline_id=pid, run_id="r1", stage="sink_write", error_type="OSError",
                      error_message="timeout", source="src", checkpoint=i,
                      record={"id": i, "v": float(i)}, sink="flaky")
            for i in ids
        ])
        await sink.close()

    asyncio.run(seed())


@pytest.mark.parametrize("plane", ["rows", "python_batches", "arrow_batches"])
def test_a_failure_is_attributed_to_its_own_entry_on_every_plane(
    tmp_path: Path, dlq_name: str, plane: str
) -> None:
    from agora import IterableBatchSource
    from tests.runtime.doubles import FlakySink

    dlq = tmp_path / dlq_name
    seed_sink_failures(dlq, list(range(5)))
    sources = {
        "rows": lambda: IterableSource([], name="src"),
        "python_batches": lambda: IterableBatchSource([], name="src"),
        "arrow_batches": lambda: ArrowBatchSource(pa.table({"id": [0], "v": [0.0]}).slice(0, 0)),
    }
    sink = FlakySink(fail=lambda r: r["id"] == 3)
    bound = Pipeline(sources[plane](), id="t").build(sink)
    report = replay(bound, dlq)
    assert (report.sent, report.failed_again) == (5, 1)
    assert sorted(r["id"] for r in sink.rows) == [0, 1, 2, 4]
    state = {e.record.record["id"]: (e.replayed, e.attempts) for e in entries(dlq)}
    assert state == {0: (True, 1), 1: (True, 1), 2: (True, 1), 3: (False, 2), 4: (True, 1)}


def test_an_untraceable_failure_keeps_its_whole_unit_pending(tmp_path: Path,
                                                             dlq_name: str) -> None:
    import pyarrow.compute as pc

    from agora import ArrowMapMiddleware
    from tests.runtime.doubles import FlakySink

    dlq = tmp_path / dlq_name
    seed_sink_failures(dlq, list(range(5)))

    def drop_first_and_rescale(batch: Any) -> Any:  # drops a row: rows can't be traced
        batch = batch.slice(1)
        return batch.set_column(1, "v", pc.multiply(batch.column("v"), 10.0))

    sink = FlakySink(fail=lambda r: r["id"] == 3)
    bound = (Pipeline(ArrowBatchSource(pa.table({"id": [0], "v": [0.0]}).slice(0, 0)), id="t")
             .pipe(ArrowMapMiddleware(drop_first_and_rescale, name="rescale"))
             .build(sink))
    report = replay(bound, dlq)
    assert report.failed_again == 5  # never marks a record handled that may have failed
    assert not any(e.replayed for e in entries(dlq))
    assert all(e.attempts == 2 for e in entries(dlq))


def test_bytes_values_are_replayed_as_bytes(tmp_path: Path, dlq_name: str) -> None:
    dlq = tmp_path / dlq_name

    async def seed() -> None:
        sink = new_dlq(dlq)
        await sink.open()
        await sink.write(DLQRecord(pipeline_id="b", run_id="r1", stage="middleware",
                                   error_type="E", error_message="m", source="s", checkpoint=1,
                                   record={"id": 1, "payload": b"\x00\xff\x10"}))
        await sink.close()

    asyncio.run(seed())
    out = MemorySink(name="out")
    report = replay(Pipeline(IterableSource([], name="s"), id="b").build(out), dlq)
    assert report.ok and out.records == [{"id": 1, "payload": b"\x00\xff\x10"}]


def test_replay_sends_the_original_record_when_the_dead_letter_carries_one(
        tmp_path: Path, dlq_name: str, poison: set[int]) -> None:
    """A dead letter whose ``record`` differs from what the source emitted (it names
    ``original_record``) is replayed as the source emitted it."""
    async def write_letter() -> None:
        dlq = new_dlq(tmp_path / dlq_name)
        await dlq.open()
        await dlq.write(DLQRecord(
            pipeline_id="orders", run_id="r1", stage=DLQStage.MIDDLEWARE,
            error_type="ValueError", error_message="enrich failed", source="orders",
            record={"id": 42, "name": "n42", "enriched": "half-done"},
            original_record={"id": 42, "name": "n42"}, middleware="check",
        ))
        await dlq.close()

    asyncio.run(write_letter())
    poison.clear()
    report = replay(job(tmp_path, dlq_name), tmp_path / dlq_name)
    assert report.sent == 1
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [{"id": 42, "name": "n42"}]
