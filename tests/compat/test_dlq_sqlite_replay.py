"""The SQLite DLQ's 0.3.0 calls: ``write()`` durable on return, ``replay()`` counting an
attempt on the record's row, ``acknowledge()`` removing exactly that row."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agora import DLQRecord
from agora.errors import LifecycleError
from agora.sources.dlq import DLQSource
from agora.stores import DLQError, SQLiteDLQSink, read_dlq

STAMP = dt.datetime(2026, 5, 22, 12, 0, tzinfo=dt.UTC)


def dead(i: int, **changes: Any) -> DLQRecord:
    fields: dict[str, Any] = dict(
        pipeline_id="orders", run_id="run-1", stage="sink_write", error_type="RuntimeError",
        error_message="boom", record={"id": i}, created_at=STAMP,
    )
    fields.update(changes)
    return DLQRecord(**fields)


def rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, record, attempt FROM agora_dlq ORDER BY id").fetchall()
    finally:
        conn.close()


async def stream(path: Path) -> list[DLQRecord]:
    return [rec async for rec in DLQSource(path).stream()]


def test_write_is_committed_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            await sink.write(dead(1))
            assert [r[1] for r in rows(path)] == ['{"id": 1}']  # an independent reader sees it
        finally:
            await sink.close()

    asyncio.run(scenario())


def test_replay_and_acknowledge_reach_the_row_a_record_was_read_from(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            # Two records alike in every field replay() and acknowledge() could match on.
            await sink.write(dead(1))
            await sink.write(dead(2))
            first, second = await stream(path)
            again = await sink.replay(second)
            assert (again.attempt, again.record) == (1, {"id": 2})
            assert [(r[1], r[2]) for r in rows(path)] == [('{"id": 1}', 0), ('{"id": 2}', 1)]
            await sink.acknowledge(again)
            assert [r.record for r in await stream(path)] == [{"id": 1}]
            assert (await stream(path))[0].attempt == 0
        finally:
            await sink.close()

    asyncio.run(scenario())


def test_replay_of_a_record_built_by_hand_finds_the_oldest_matching_row(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            await sink.write_batch([dead(1), dead(2)])  # buffered: replay commits them first
            again = await sink.replay(dead(9))  # no row id: pipeline, run, stage, created_at
            assert again.attempt == 1
            assert [(r[1], r[2]) for r in rows(path)] == [('{"id": 1}', 1), ('{"id": 2}', 0)]
        finally:
            await sink.close()

    asyncio.run(scenario())


def test_acknowledging_twice_is_an_error_naming_the_record_and_file(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            await sink.write(dead(1))
            [rec] = await stream(path)
            await sink.acknowledge(rec)
            with pytest.raises(DLQError, match=r"cannot acknowledge the record of pipeline "
                                               r"'orders', run 'run-1', stage 'sink_write'.*no "
                                               r"row of .*dlq\.db matches"):
                await sink.acknowledge(rec)
            with pytest.raises(DLQError, match="cannot replay"):
                await sink.replay(rec)
        finally:
            await sink.close()

    asyncio.run(scenario())


def test_a_record_read_from_another_file_never_changes_this_one(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine.db", tmp_path / "other.db"

    async def scenario() -> None:
        for path, run in ((mine, "run-1"), (other, "run-2")):
            sink = SQLiteDLQSink(path)
            await sink.open()
            await sink.write(dead(1, run_id=run))
            await sink.close()
        [foreign] = await stream(other)  # row id 1, like the one row of ``mine``
        sink = SQLiteDLQSink(mine)
        await sink.open()
        try:
            with pytest.raises(DLQError, match="read from another DLQ file"):
                await sink.acknowledge(foreign)
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert [r.run_id for r in read_dlq(mine)] == ["run-1"]


def test_replay_and_acknowledge_need_an_open_sink(tmp_path: Path) -> None:
    sink = SQLiteDLQSink(tmp_path / "dlq.db")
    with pytest.raises(LifecycleError, match="cannot replay sink 'sqlite_dlq' before open"):
        asyncio.run(sink.replay(dead(1)))
    with pytest.raises(LifecycleError, match="cannot acknowledge sink 'sqlite_dlq' before open"):
        asyncio.run(sink.acknowledge(dead(1)))


def test_replay_refuses_what_is_not_a_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        sink = SQLiteDLQSink(tmp_path / "dlq.db")
        await sink.open()
        try:
            with pytest.raises(TypeError, match="stores agora.DLQRecord objects; got dict"):
                await sink.replay({"id": 1})  # type: ignore[arg-type]
        finally:
            await sink.close()

    asyncio.run(scenario())


def test_a_failed_acknowledge_changes_nothing_and_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            await sink.write(dead(1))
            [rec] = await stream(path)
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            assert sink._conn is not None
            sink._conn.execute("PRAGMA busy_timeout = 0")  # fail at once, not after 5 s
            with pytest.raises(DLQError, match="could not acknowledge a record in .*check disk "
                                               "space and file locks, then retry"):
                await sink.acknowledge(rec)
            blocker.execute("ROLLBACK")
            assert len(rows(path)) == 1
            await sink.acknowledge(rec)  # the retry succeeds
            assert rows(path) == []
        finally:
            blocker.close()
            await sink.close()

    asyncio.run(scenario())
