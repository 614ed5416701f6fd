"""DLQ capture never fails on content: surrogates, bytes, NaN, sets, bad reprs, oversized
values; dedupe never merges two different failures; version-1 files are migrated."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agora import DeliveryConfig, IterableSource, MapMiddleware, MemorySink, Pipeline
from agora.records import DLQRecord, json_restore, json_safe
from agora.stores import DLQError, JsonLinesDLQSink, SQLiteDLQSink, read_dlq
from agora.stores.dlq_schema import SCHEMA_VERSION

SINKS = {"sqlite": "dlq.db", "jsonl": "dlq.jsonl"}


@pytest.fixture(params=sorted(SINKS))
def dlq_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / SINKS[request.param]


def new_sink(path: Path, **kwargs: Any) -> Any:
    cls = SQLiteDLQSink if path.suffix == ".db" else JsonLinesDLQSink
    return cls(path, **kwargs)


async def write_all(path: Path, records: list[DLQRecord], **kwargs: Any) -> None:
    sink = new_sink(path, **kwargs)
    await sink.open()
    try:
        await sink.write_batch(records)
        await sink.flush()
    finally:
        await sink.close()


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class BadMessage(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


# -- lone surrogates -------------------------------------------------------------------------


def test_lone_surrogates_in_data_fields_are_stored_losslessly(dlq_path: Path,
                                                              make_dlq_record) -> None:
    rec = make_dlq_record(
        0, record={"name": "a\ud800b", "\udfff": 1}, checkpoint={"pos": "\udc80"},
        stage="sink_write", middleware=None, sink="db", processed_record=["\ud83d"],
    )
    asyncio.run(write_all(dlq_path, [rec]))
    [back] = read_dlq(dlq_path)
    assert back.record == {"name": "a\ud800b", "\udfff": 1}
    assert back.checkpoint == {"pos": "\udc80"}
    assert back.processed_record == ["\ud83d"]
    assert back.round_trippable is True and back.truncated is False


def test_lone_surrogates_in_text_fields_never_fail_the_write(dlq_path: Path,
                                                             make_dlq_record) -> None:
    rec = make_dlq_record(0, pipeline_id="p\ud800", error_message="bad \udfff\x00value",
                          middleware="mw\ud801", source="s\udc00")
    asyncio.run(write_all(dlq_path, [rec]))
    [back] = read_dlq(dlq_path)
    if dlq_path.suffix == ".jsonl":  # JSON escapes keep every field exact
        assert back == rec
    else:  # SQLite TEXT cannot hold them: kept visibly as \udXXX escapes
        assert back.pipeline_id == "p\\ud800"
        assert back.error_message == "bad \\udfff\x00value"
        assert back.middleware == "mw\\ud801" and back.source == "s\\udc00"
    assert back.record == rec.record


@pytest.mark.parametrize("policy", ["fail_closed", "log_and_continue"])
def test_record_with_a_surrogate_is_captured_before_the_checkpoint_passes_it(
    dlq_path: Path, policy: str
) -> None:
    rows = [{"id": 0, "name": "ok"}, {"id": 1, "name": json.loads('"\\ud800"')},
            {"id": 2, "name": "ok"}]

    def reject_surrogates(row: dict[str, Any]) -> dict[str, Any]:
        row["name"].encode("utf-8")  # raises UnicodeEncodeError for row 1
        return row

    class Store:
        def __init__(self) -> None:
            self.saves: list[Any] = []

        def load(self, key: str) -> None:
            return None

        def save(self, key: str, checkpoint: Any) -> None:
            # The checkpoint passes row 1 only once the DLQ holds it durably.
            assert [r.record["id"] for r in read_dlq(dlq_path)] == [1]
            self.saves.append(checkpoint.value)

    store = Store()
    out = MemorySink(name="out")
    bound = (Pipeline(IterableSource(rows, name="rows"), id="p")
             .pipe(MapMiddleware(reject_surrogates, name="enc"))
             .build(out, delivery=DeliveryConfig(dlq=new_sink(dlq_path), checkpoint=store,
                                                 failure_policy=policy)))
    summary = bound.run_sync()
    assert summary.records_errored == 1 and summary.runtime["dlq_failures"] == 0
    assert [r["id"] for r in out.records] == [0, 2]
    [captured] = read_dlq(dlq_path)
    assert captured.record == {"id": 1, "name": "\ud800"}
    assert captured.error_type == "UnicodeEncodeError"
    assert store.saves == [3]


# -- values JSON cannot hold -----------------------------------------------------------------


def test_hostile_values_are_stored_flagged_never_dropped(dlq_path: Path,
                                                         make_dlq_record) -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    record = {
        "blob": b"\x00\xffbinary", "nan": math.nan, "inf": -math.inf, "tags": {"a", "b"},
        "weird": BadRepr(), "cyclic": cyclic, "huge": 10 ** 5000, 7: "int key",
    }
    rec = make_dlq_record(0, record=record)
    asyncio.run(write_all(dlq_path, [rec, make_dlq_record(1)]))
    back, clean = list(read_dlq(dlq_path))
    assert clean.round_trippable is True
    assert back.round_trippable is False and back.truncated is False
    stored = back.record
    assert json_restore(stored["blob"]) == b"\x00\xffbinary"  # bytes: lossless tag
    assert stored["nan"] == {"__agora_float__": "nan"}
    assert stored["inf"] == {"__agora_float__": "-inf"}
    assert stored["tags"]["__agora_unserialisable__"] is True
    assert stored["tags"]["type"] == "set"
    assert stored["weird"] == {"__agora_unserialisable__": True, "type": "BadRepr",
                               "repr": "<BadRepr object: repr() raised RuntimeError>"}
    assert "nested deeper than" in json.dumps(stored["cyclic"])
    assert stored["huge"]["repr"].startswith("<int of ")
    assert stored["7"] == "int key"


def test_exception_whose_str_raises_is_still_captured(dlq_path: Path) -> None:
    rec = DLQRecord.from_exception(BadMessage(), pipeline_id="p", run_id="r", stage="middleware",
                                   source="s", checkpoint=1, record={"id": 1},
                                   middleware=BadRepr())  # type: ignore[arg-type]
    asyncio.run(write_all(dlq_path, [rec]))
    [back] = read_dlq(dlq_path)
    assert back.error_type == "BadMessage"
    assert back.error_message == "<BadMessage: str() raised RuntimeError>"
    assert back.middleware == "<BadRepr: str() raised RuntimeError>"


def test_to_json_is_always_utf8_encodable(make_dlq_record) -> None:
    rec = make_dlq_record(0, record={"s": "\ud800", "x": BadRepr(), "b": bytearray(b"\x01")},
                          error_message="\udfff")
    text = rec.to_json()
    text.encode("utf-8")
    data = json.loads(text)
    assert data["record"]["s"] == "\ud800" and data["error_message"] == "\udfff"
    assert data["round_trippable"] is False


def test_non_utf8_friendly_but_valid_text_stays_readable(make_dlq_record) -> None:
    rec = make_dlq_record(0, record={"s": "naïve ✓"})
    assert "naïve ✓" in rec.to_json()  # escapes only when a lone surrogate forces them


# -- the size cap ----------------------------------------------------------------------------


def test_oversized_values_are_cut_and_flagged(dlq_path: Path, make_dlq_record) -> None:
    big = "x" * 2_000_001
    rec = make_dlq_record(0, record={"id": 0, "big": big, "raw": b"\x01" * 50},
                          error_message="could not convert " + big)
    asyncio.run(write_all(dlq_path, [rec], max_value_size=1000))
    [back] = read_dlq(dlq_path)
    assert back.truncated is True and back.round_trippable is False
    cut = back.record["big"]
    assert cut == {"__agora_truncated__": True, "type": "str", "size": 2_000_001,
                   "head": "x" * 1000}
    # 50 bytes fit under the cap: kept whole, in the lossless tagged form
    assert back.record["raw"] == {"__agora_bytes_b64__": base64.b64encode(b"\x01" * 50).decode()}
    assert json_restore(back.record["raw"]) == b"\x01" * 50
    assert back.error_message.startswith("could not convert xxx")
    assert back.error_message.endswith("… [cut: 2,000,019 characters in all]")
    assert len(back.error_message) < 1100
    assert dlq_path.stat().st_size < 50_000  # nothing was copied whole


def test_default_cap_cuts_a_200_mb_value(make_dlq_record) -> None:
    rec = make_dlq_record(0, record={"blob": b"\x00" * 200_000_000})
    data = rec.to_dict()
    assert data["truncated"] is True
    assert data["record"]["blob"]["size"] == 200_000_000
    assert len(data["record"]["blob"]["head_b64"]) < 1_400_000


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_value_size_is_validated(dlq_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=r"max_value_size must be an integer >= 1"):
        new_sink(dlq_path, max_value_size=bad)


def test_json_safe_never_raises_on_a_mapping_that_breaks() -> None:
    class Broken(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise OSError("gone")

    flags = {"ok": True}
    out = json_safe({"inner": Broken(a=1)}, flags)
    assert out["inner"]["__agora_unserialisable__"] is True
    assert "reading it raised OSError" in out["inner"]["repr"]
    assert flags["ok"] is False


# -- dedupe ----------------------------------------------------------------------------------


def test_dedupe_keeps_two_different_failures_of_one_record(tmp_path: Path,
                                                           make_dlq_record) -> None:
    path = tmp_path / "dlq.db"
    first = make_dlq_record(4, error_type="ValueError", error_message="duplicate account")
    asyncio.run(write_all(path, [first]))
    second = make_dlq_record(4, run_id="run-2", error_type="ValueError",
                             error_message="sanctions hit")
    asyncio.run(write_all(path, [second]))
    assert [r.error_message for r in read_dlq(path)] == ["duplicate account", "sanctions hit"]
    # the same failure re-occurring (a run re-run after a crash) still dedupes
    asyncio.run(write_all(path, [second.with_fields(run_id="run-3")]))
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT error_message, attempts, last_run_id FROM agora_dlq "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows == [("duplicate account", 1, None), ("sanctions hit", 2, "run-3")]


def test_dedupe_of_a_different_error_type_with_the_same_message(tmp_path: Path,
                                                                 make_dlq_record) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(write_all(path, [make_dlq_record(1, error_type="KeyError")]))
    asyncio.run(write_all(path, [make_dlq_record(1, error_type="TypeError")]))
    assert [r.error_type for r in read_dlq(path)] == ["KeyError", "TypeError"]


# -- schema migration ------------------------------------------------------------------------

_V1_TABLE = (
    "CREATE TABLE agora_dlq (id INTEGER PRIMARY KEY AUTOINCREMENT, record_key TEXT UNIQUE,"
    " pipeline_id TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL,"
    " error_type TEXT NOT NULL, error_message TEXT NOT NULL, source TEXT NOT NULL,"
    " checkpoint TEXT NOT NULL, record TEXT NOT NULL, processed_record TEXT NOT NULL,"
    " middleware TEXT, sink TEXT, created_at TEXT NOT NULL, round_trippable INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 1, last_run_id TEXT, last_seen_at TEXT)"
)


def make_v1_file(path: Path, version: int = 1) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")  # as Agora creates its files
    conn.execute("CREATE TABLE agora_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO agora_meta VALUES ('dlq.schema_version', ?)", (str(version),))
    conn.execute(_V1_TABLE)
    conn.execute(
        "INSERT INTO agora_dlq (record_key, pipeline_id, run_id, stage, error_type,"
        " error_message, source, checkpoint, record, processed_record, middleware, sink,"
        " created_at, round_trippable, attempts) VALUES ('old:0', 'pipe', 'run-0',"
        " 'middleware', 'ValueError', 'old failure', 'numbers', '{\"offset\": 9}',"
        " '{\"id\": 9}', 'null', 'parse', NULL, '2026-01-01T00:00:00+00:00', 1, 3)"
    )
    conn.commit()
    conn.close()
    path.chmod(0o600)


def test_version_1_file_is_migrated_on_open_and_keeps_its_rows(tmp_path: Path,
                                                               make_dlq_record) -> None:
    path = tmp_path / "dlq.db"
    make_v1_file(path)
    asyncio.run(write_all(path, [make_dlq_record(1)]))
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM agora_meta WHERE key = 'dlq.schema_version'"
                               ).fetchone()[0]
        rows = conn.execute("SELECT record_key, attempts, truncated, replayed_at FROM agora_dlq "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()
    assert version == str(SCHEMA_VERSION)
    assert rows[0] == ("old:0", 3, 0, None)  # the old row and its values are intact
    assert [r.record["id"] for r in read_dlq(path)] == [9, 1]
    asyncio.run(write_all(path, [make_dlq_record(2)]))  # a second open: nothing left to do
    assert len(list(read_dlq(path))) == 3


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    make_v1_file(path, version=SCHEMA_VERSION + 1)
    with pytest.raises(DLQError, match=f"schema version {SCHEMA_VERSION + 1}, written by a "
                                       f"newer Agora"):
        asyncio.run(SQLiteDLQSink(path).open())


def test_migration_that_cannot_write_is_a_clear_error(tmp_path: Path, short_busy_timeout) -> None:
    path = tmp_path / "dlq.db"
    make_v1_file(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        sink = SQLiteDLQSink(path)
        with pytest.raises(DLQError, match=r"'sqlite_dlq' cannot upgrade .*dlq.db to schema "
                                           rf"version {SCHEMA_VERSION}: database is locked"):
            asyncio.run(sink.open())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [r.record["id"] for r in read_dlq(path)] == [9]


# -- log lines carry no record values --------------------------------------------------------


class LeakyDLQ(MemorySink):
    """A DLQ whose write fails with a message quoting the record (as encoders do)."""

    async def write_batch(self, records: Any) -> None:
        raise ValueError(f"Could not convert {records[0].record['ssn']!r}")


@pytest.mark.parametrize("leak", ["dlq", "redactor"])
def test_log_lines_of_a_failed_dlq_write_embed_no_record_value(
    caplog: pytest.LogCaptureFixture, leak: str
) -> None:
    def fail(row: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"Could not convert {row['ssn']!r}")  # a third-party style message

    def leaky_redactor(rec: DLQRecord) -> DLQRecord:
        raise KeyError(f"cannot mask {rec.record['ssn']}")

    dlq = LeakyDLQ(name="dlq") if leak == "dlq" else MemorySink(name="dlq")
    bound = (Pipeline(IterableSource([{"ssn": "123-45-0000"}], name="people"), id="p")
             .pipe(MapMiddleware(fail, name="convert"))
             .build(MemorySink(name="out"), delivery=DeliveryConfig(
                 dlq=dlq, failure_policy="log_and_continue",
                 dlq_redactor=leaky_redactor if leak == "redactor" else None)))
    with caplog.at_level(logging.WARNING, logger="agora"):
        summary = bound.run_sync()
    assert summary.runtime["dlq_failures"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed to capture 1 record(s)" in m for m in messages)
    assert any("not captured by a DLQ" in m for m in messages)
    assert not any("123-45-0000" in m for m in messages), messages


def test_own_error_messages_in_dlq_failure_logs_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    def fail(row: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad")

    def not_a_record(rec: DLQRecord) -> Any:
        return {"not": "a record"}

    bound = (Pipeline(IterableSource([{"id": 1}], name="ids"), id="p")
             .pipe(MapMiddleware(fail, name="m"))
             .build(MemorySink(name="out"), delivery=DeliveryConfig(
                 dlq=MemorySink(name="dlq"), failure_policy="log_and_continue",
                 dlq_redactor=not_a_record)))
    with caplog.at_level(logging.ERROR, logger="agora"):
        bound.run_sync()
    assert any("dlq_redactor must return a DLQRecord; got dict" in r.getMessage()
               for r in caplog.records)
