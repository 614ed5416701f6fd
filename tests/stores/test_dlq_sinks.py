"""SQLiteDLQSink and JsonLinesDLQSink: lifecycle, durability on flush, fallbacks, dedupe."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agora.errors import LifecycleError
from agora.records import DLQRecord
from agora.sinks.base import BaseSink, SinkState
from agora.stores import (
    DLQError,
    JsonLinesDLQSink,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
    read_dlq,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SINKS = {"sqlite": (SQLiteDLQSink, "dlq.db"), "jsonl": (JsonLinesDLQSink, "dlq.jsonl")}


@pytest.fixture(params=sorted(SINKS))
def dlq_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / SINKS[request.param][1]


def new_sink(path: Path, **kwargs: object) -> BaseSink:
    cls = SQLiteDLQSink if path.suffix == ".db" else JsonLinesDLQSink
    return cls(path, **kwargs)  # type: ignore[arg-type]


async def write_all(path: Path, records: list[DLQRecord], **kwargs: object) -> None:
    sink = new_sink(path, **kwargs)
    await sink.open()
    try:
        await sink.write(records[0])
        await sink.write_batch(records[1:])
    finally:
        await sink.close()


def independent_count(path: Path) -> int:
    """Rows another process would see right now, read without Agora's code."""
    if path.suffix == ".db":
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT COUNT(*) FROM agora_dlq").fetchone()[0]
        finally:
            conn.close()
    return sum(1 for line in path.read_bytes().splitlines() if json.loads(line))


# -- round trips and files -------------------------------------------------------------------


def test_records_round_trip(dlq_path: Path, make_dlq_record) -> None:
    records = [
        make_dlq_record(0),
        make_dlq_record(1, stage="sink_write", sink="warehouse", middleware=None,
                        processed_record={"id": 1, "clean": True}),
        make_dlq_record(2, stage="source_record", record="raw,csv,line", checkpoint=None),
        make_dlq_record(3, error_message="multi\nline ✓ \u2028 message"),
    ]
    asyncio.run(write_all(dlq_path, records))
    assert list(read_dlq(dlq_path)) == records


def test_dlq_file_is_created_owner_only(dlq_path: Path, make_dlq_record) -> None:
    old_umask = os.umask(0o000)
    try:
        asyncio.run(write_all(dlq_path, [make_dlq_record(0)]))
    finally:
        os.umask(old_umask)
    assert dlq_path.stat().st_mode & 0o777 == 0o600


def test_reopening_appends_and_never_truncates(dlq_path: Path, make_dlq_record) -> None:
    asyncio.run(write_all(dlq_path, [make_dlq_record(0), make_dlq_record(1)]))
    asyncio.run(write_all(dlq_path, [make_dlq_record(2)], **(
        {"dedupe": False} if dlq_path.suffix == ".db" else {})))
    assert [r.record["id"] for r in read_dlq(dlq_path)] == [0, 1, 2]


def test_unserialisable_record_is_stored_flagged_never_dropped(
    dlq_path: Path, make_dlq_record
) -> None:
    record = make_dlq_record(
        0, record={"id": 0, "handle": object()}, processed_record={"score": float("nan")}
    )
    asyncio.run(write_all(dlq_path, [record, make_dlq_record(1)]))
    stored = list(read_dlq(dlq_path))
    assert len(stored) == 2
    assert stored[0].round_trippable is False
    assert stored[0].record["id"] == 0
    fallback = stored[0].record["handle"]
    assert fallback["__agora_unserialisable__"] is True and fallback["type"] == "object"
    assert fallback["repr"].startswith("<object object at")
    assert stored[0].processed_record == {"score": {"__agora_float__": "nan"}}
    assert stored[1].round_trippable is True


def test_custom_sink_name_and_defaults(tmp_path: Path) -> None:
    assert SQLiteDLQSink(tmp_path / "a.db").sink_name == "sqlite_dlq"
    assert JsonLinesDLQSink(tmp_path / "a.jsonl").sink_name == "jsonl_dlq"
    assert SQLiteDLQSink(tmp_path / "a.db", sink_name="errors").sink_name == "errors"
    assert JsonLinesDLQSink(tmp_path / "a.jsonl", sink_name="errs").sink_name == "errs"
    assert "a.db" in repr(SQLiteDLQSink(tmp_path / "a.db"))
    assert "a.jsonl" in repr(JsonLinesDLQSink(tmp_path / "a.jsonl"))


def test_write_refuses_non_dlq_records_naming_the_sink(dlq_path: Path, make_dlq_record) -> None:
    async def scenario() -> None:
        sink = new_sink(dlq_path)
        await sink.open()
        try:
            expected = rf"DLQ sink '{sink.sink_name}' stores agora.DLQRecord"
            with pytest.raises(TypeError, match=expected):
                await sink.write({"not": "a DLQRecord"})
            with pytest.raises(TypeError, match="got dict"):
                await sink.write_batch([make_dlq_record(0), {"x": 1}])
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert list(read_dlq(dlq_path)) == []  # the batch was all-or-nothing


# -- durability ------------------------------------------------------------------------------


def test_flush_makes_writes_visible_to_an_independent_reader(
    dlq_path: Path, make_dlq_record
) -> None:
    async def scenario() -> None:
        sink = new_sink(dlq_path)
        await sink.open()
        try:
            await sink.write_batch([make_dlq_record(i) for i in range(3)])
            await sink.flush()
            assert independent_count(dlq_path) == 3
            await sink.write(make_dlq_record(3))
            await sink.flush()
            assert independent_count(dlq_path) == 4
            await sink.flush()  # nothing new: harmless
        finally:
            await sink.close()

    asyncio.run(scenario())


def test_close_flushes(dlq_path: Path, make_dlq_record) -> None:
    async def scenario() -> None:
        sink = new_sink(dlq_path)
        await sink.open()
        await sink.write(make_dlq_record(0))
        await sink.close()

    asyncio.run(scenario())
    assert independent_count(dlq_path) == 1


_KILLED_DLQ_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from agora.records import DLQRecord
    from agora.stores.dlq import SQLiteDLQSink
    from agora.stores.dlq_jsonl import JsonLinesDLQSink

    async def main(path, flushed, unflushed):
        cls = SQLiteDLQSink if path.endswith(".db") else JsonLinesDLQSink
        sink = cls(path)
        await sink.open()
        def rec(i):
            return DLQRecord("pipe", "run-1", "middleware", "ValueError", "bad", "numbers",
                             {"offset": i}, {"id": i})
        for i in range(flushed):
            await sink.write(rec(i))
        await sink.flush()
        for i in range(flushed, flushed + unflushed):
            await sink.write(rec(i))
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


@pytest.mark.timeout(60)
def test_flushed_records_survive_sigkill(dlq_path: Path, no_orphans) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_DLQ_WRITER, str(dlq_path), "50", "5"],
        env=env, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = [r.record["id"] for r in read_dlq(dlq_path)]
    assert ids[:50] == list(range(50))
    assert len(ids) <= 55


# -- lifecycle -------------------------------------------------------------------------------


def test_lifecycle_misuse_is_a_lifecycle_error(dlq_path: Path, make_dlq_record) -> None:
    async def scenario() -> None:
        sink = new_sink(dlq_path)
        with pytest.raises(LifecycleError, match="before open"):
            await sink.write(make_dlq_record(0))
        with pytest.raises(LifecycleError, match="before open"):
            await sink.write_batch([make_dlq_record(0)])
        with pytest.raises(LifecycleError, match="before open"):
            await sink.flush()
        await sink.open()
        await sink.open()  # a second open is a no-op
        await sink.write(make_dlq_record(0))
        await sink.close()
        await sink.close()  # idempotent
        assert sink.state is SinkState.CLOSED
        with pytest.raises(LifecycleError, match="closed sink"):
            await sink.write(make_dlq_record(1))
        with pytest.raises(LifecycleError, match="closed sink"):
            await sink.write_batch([make_dlq_record(1)])
        with pytest.raises(LifecycleError, match="closed sink"):
            await sink.flush()

    asyncio.run(scenario())
    assert independent_count(dlq_path) == 1


def test_reopened_sink_continues_its_output(dlq_path: Path, make_dlq_record) -> None:
    """A bound pipeline runs repeatedly with the same DLQ sink object."""

    async def scenario() -> None:
        sink = new_sink(dlq_path)
        for run in range(3):
            await sink.open()
            await sink.write(make_dlq_record(run, run_id=f"run-{run}"))
            await sink.close()
            assert sink.state is SinkState.CLOSED

    asyncio.run(scenario())
    assert [r.run_id for r in read_dlq(dlq_path)] == ["run-0", "run-1", "run-2"]


def test_sqlite_replay_on_a_reopened_sink_adds_no_duplicates(
    tmp_path: Path, make_dlq_record
) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        for run_id in ("run-1", "run-2"):  # the second run replays the same failures
            await sink.open()
            await sink.write_batch([make_dlq_record(i, run_id=run_id) for i in (7, 7, 8)])
            await sink.close()

    asyncio.run(scenario())
    assert [r.record["id"] for r in read_dlq(path)] == [7, 7, 8]


def test_close_before_open_creates_nothing(dlq_path: Path) -> None:
    sink = new_sink(dlq_path)
    asyncio.run(sink.close())
    assert sink.state is SinkState.CLOSED
    assert not dlq_path.exists()


def test_failed_open_leaves_the_sink_unopened(tmp_path: Path) -> None:
    # Missing folders are created; a regular file where a folder should be cannot be.
    (tmp_path / "a-file").write_text("x")
    for path in (tmp_path / "a-file" / "sub" / "dlq.db", tmp_path / "a-file" / "sub" / "dlq.jsonl"):
        sink = new_sink(path)
        with pytest.raises(DLQError, match="a-file"):
            asyncio.run(sink.open())
        assert sink.state is SinkState.NEW


# -- SQLite specifics ------------------------------------------------------------------------


def test_sqlite_replay_after_crash_adds_no_duplicate_rows(tmp_path: Path, make_dlq_record) -> None:
    path = tmp_path / "dlq.db"
    first_run = [make_dlq_record(i) for i in range(4)]
    asyncio.run(write_all(path, first_run))
    # The resumed run re-emits the same records from the same checkpoint, under a new run id.
    replay = [r.with_fields(run_id="run-2") for r in first_run[2:]] + [
        make_dlq_record(9, run_id="run-2")
    ]
    asyncio.run(write_all(path, replay))
    assert [r.record["id"] for r in read_dlq(path)] == [0, 1, 2, 3, 9]
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT json_extract(record, '$.id'), attempts, run_id, last_run_id "
            "FROM agora_dlq ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [
        (0, 1, "run-1", None), (1, 1, "run-1", None), (2, 2, "run-1", "run-2"),
        (3, 2, "run-1", "run-2"), (9, 1, "run-2", None),
    ]


def test_sqlite_identical_failures_in_one_run_are_all_kept(tmp_path: Path, make_dlq_record) -> None:
    path = tmp_path / "dlq.db"
    twin = make_dlq_record(5)
    asyncio.run(write_all(path, [twin, twin, twin]))
    assert len(list(read_dlq(path))) == 3
    asyncio.run(write_all(path, [twin.with_fields(run_id="run-2")] * 3))  # the replay
    assert len(list(read_dlq(path))) == 3


def test_sqlite_dedupe_off_inserts_every_write(tmp_path: Path, make_dlq_record) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(write_all(path, [make_dlq_record(0)], dedupe=False))
    asyncio.run(write_all(path, [make_dlq_record(0)], dedupe=False))
    assert len(list(read_dlq(path))) == 2


def test_sqlite_commits_early_when_the_buffer_is_full(tmp_path: Path, make_dlq_record) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path, max_buffered=2)
        await sink.open()
        try:
            await sink.write(make_dlq_record(0))
            await sink.write(make_dlq_record(1))
            assert independent_count(path) == 2  # committed without an explicit flush
            await sink.write_batch([make_dlq_record(2), make_dlq_record(3)])
            assert independent_count(path) == 4
        finally:
            await sink.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10"])
def test_sqlite_max_buffered_is_validated(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="max_buffered must be an integer >= 1"):
        SQLiteDLQSink(tmp_path / "dlq.db", max_buffered=bad)  # type: ignore[arg-type]


def test_sqlite_failed_commit_keeps_rows_for_the_next_flush(
    tmp_path: Path, make_dlq_record, short_busy_timeout
) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            await sink.write_batch([make_dlq_record(0), make_dlq_record(1)])
            blocker.execute("BEGIN IMMEDIATE")  # e.g. another process holds the write lock
            with pytest.raises(DLQError, match=r"'sqlite_dlq' could not commit 2 record\(s\)"):
                await sink.flush()
            blocker.execute("ROLLBACK")
            await sink.flush()
            assert independent_count(path) == 2
            await sink.write_batch([make_dlq_record(2)])  # buffered (write() commits)
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(DLQError, match="could not commit 1 record"):
                await sink.close()  # close still releases the file
            assert sink.state is SinkState.CLOSED
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
            await sink.close()

    asyncio.run(scenario())
    assert independent_count(path) == 2


def test_sqlite_dlq_can_share_the_checkpoint_file(
    tmp_path: Path, make_dlq_record, make_checkpoint
) -> None:
    path = tmp_path / "state.db"
    store = SyncSQLiteCheckpointStore(path)
    store.save("pipe", make_checkpoint(1))

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            await sink.write(make_dlq_record(0))
            await sink.flush()
            store.save("pipe", make_checkpoint(2))  # no lock held between DLQ flushes
        finally:
            await sink.close()

    try:
        asyncio.run(scenario())
        loaded = store.load("pipe")
        assert loaded is not None and loaded.value == 2
    finally:
        store.close()
    assert [r.record["id"] for r in read_dlq(path)] == [0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", r"empty \(0 bytes\)"), (b"garbage" * 100, "not an SQLite database")],
)
def test_sqlite_damaged_dlq_file_is_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "dlq.db"
    path.write_bytes(content)
    sink = SQLiteDLQSink(path)
    with pytest.raises(DLQError, match=expected):
        asyncio.run(sink.open())
    assert path.read_bytes() == content


def test_sqlite_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    with pytest.raises(DLQError, match="without Agora's dlq tables"):
        asyncio.run(SQLiteDLQSink(path).open())


def test_sqlite_table_dropped_under_an_open_sink_fails_the_flush(
    tmp_path: Path, make_dlq_record
) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("DROP TABLE agora_dlq")
            conn.close()
            await sink.write_batch([make_dlq_record(0)])  # buffered (write() commits)
            with pytest.raises(DLQError, match="no such table"):
                await sink.flush()
        finally:
            with pytest.raises(DLQError):
                await sink.close()  # the retry fails too, and the file is still released

    asyncio.run(scenario())


def test_jsonl_failed_directory_sync_closes_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agora.stores import _files

    def broken_fsync_dir(directory: Path) -> None:
        raise OSError("fsync not supported")

    monkeypatch.setattr(_files, "fsync_dir", broken_fsync_dir)
    sink = JsonLinesDLQSink(tmp_path / "dlq.jsonl")
    open_fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(DLQError, match="fsync not supported"):
        asyncio.run(sink.open())
    assert len(os.listdir("/proc/self/fd")) == open_fds  # the new file's descriptor was closed
    assert sink.state is SinkState.NEW
