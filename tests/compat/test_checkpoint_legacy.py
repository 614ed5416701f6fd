"""Checkpoint stores keep ``source_identity``, and 0.3.0's SQLite checkpoint file (table
``state_store``) is read as it is and adopted in place by the first write."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agora import (
    Checkpoint,
    CheckpointError,
    InMemoryCheckpointStore,
    SQLiteCheckpointStore,
    SyncInMemoryCheckpointStore,
    SyncSQLiteCheckpointStore,
)
from agora.cli import main
from agora.records import SourceIdentity
from agora.stores.checkpoint_backend import (
    CheckpointPayloadError,
    KeyValueCheckpointStore,
    MemoryBackend,
)

STAMP = "2026-01-02T03:04:05+00:00"


def _identity(tmp_path: Path) -> SourceIdentity:
    source_file = tmp_path / "input.csv"
    source_file.write_text("id\n1\n", encoding="utf-8")
    return SourceIdentity.for_file(source_file)


def _legacy_file(path: Path, rows: dict[str, Any], *, expires: bool = False) -> Path:
    """A checkpoint file as 0.3.0 wrote it: ``state_store(key, value)`` with JSON values
    (a non-str value is written as it is, to make a damaged row)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE state_store (key TEXT PRIMARY KEY, value TEXT NOT NULL"
                     + (", expires_at REAL" if expires else "") + ")")
        for key, value in rows.items():
            text = value if isinstance(value, str) else json.dumps(value)
            conn.execute("INSERT INTO state_store (key, value) VALUES (?, ?)", (key, text))
        conn.commit()
    finally:
        conn.close()
    return path


def _payload(pipeline_id: str, index: int, **extra: Any) -> dict[str, Any]:
    return {"pipeline_id": pipeline_id, "run_id": "run-1", "source": f"{pipeline_id}_source",
            "value": {"index": index}, "recorded_at": STAMP, **extra}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _state_store(path: Path) -> dict[str, tuple[Any, Any]]:
    conn = sqlite3.connect(path)
    try:
        return {k: (json.loads(v), e) for k, v, e in
                conn.execute("SELECT key, value, expires_at FROM state_store")}
    finally:
        conn.close()


# -- source_identity on every store -------------------------------------------------------

def test_the_sqlite_store_keeps_the_source_identity_across_reopening(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    db = tmp_path / "ckpt.db"
    with SyncSQLiteCheckpointStore(db) as store:
        store.save("orders", Checkpoint("orders", "r1", "csv", 1, source_identity=identity))
        store.save("plain", Checkpoint("plain", "r1", "csv", 2))
    with SyncSQLiteCheckpointStore(db, create=False) as store:
        loaded = store.load("orders")
        plain = store.load("plain")
    assert loaded is not None and loaded.source_identity == identity
    assert plain is not None and plain.source_identity is None


def test_a_later_save_without_an_identity_clears_the_saved_one(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    with SyncSQLiteCheckpointStore(tmp_path / "ckpt.db") as store:
        store.save("k", Checkpoint("k", "r1", "csv", 1, source_identity=identity))
        store.save("k", Checkpoint("k", "r2", "csv", 2))
        loaded = store.load("k")
    assert loaded is not None and (loaded.value, loaded.source_identity) == (2, None)


@pytest.mark.parametrize("make", [SyncInMemoryCheckpointStore,
                                  lambda: KeyValueCheckpointStore(MemoryBackend())])
def test_the_in_memory_stores_keep_the_source_identity(tmp_path: Path, make: Any) -> None:
    identity = _identity(tmp_path)
    store = make()
    store.save("orders", Checkpoint("orders", "r1", "csv", [1], source_identity=identity))
    loaded = store.load("orders")
    assert loaded is not None and loaded.source_identity == identity
    assert loaded == Checkpoint("orders", "r1", "csv", [1], loaded.recorded_at,
                                source_identity=identity)


def test_the_coroutine_stores_round_trip_the_source_identity(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    checkpoint = Checkpoint("orders", "run-1", "csv", {"row_number": 1},
                            source_identity=identity)

    async def round_trip(store: Any) -> Checkpoint | None:
        try:
            await store.save("orders", checkpoint)
            return await store.load("orders")  # type: ignore[no-any-return]
        finally:
            await store.close()

    for store in (InMemoryCheckpointStore(), SQLiteCheckpointStore(tmp_path / "c.db")):
        loaded = asyncio.run(round_trip(store))
        assert loaded is not None and loaded.source_identity == identity, store


def test_a_key_value_payload_with_a_malformed_identity_is_refused_naming_the_key() -> None:
    backend = MemoryBackend()
    backend.set("checkpoint:orders", {**_payload("orders", 1), "source_identity": {"path": 1}})
    with pytest.raises(CheckpointPayloadError,
                       match=r"'checkpoint:orders' in MemoryBackend has a source_identity "
                             r"that cannot be read .* delete the key"):
        KeyValueCheckpointStore(backend).load("orders")


def test_a_corrupt_stored_identity_is_refused_naming_the_file_and_key(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.db"
    with SyncSQLiteCheckpointStore(db) as store:
        store.save("orders", Checkpoint("orders", "r1", "csv", 1))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE agora_checkpoints SET source_identity = '{\"path\": 3}'")
    conn.commit()
    conn.close()
    with SyncSQLiteCheckpointStore(db) as store, pytest.raises(
            CheckpointError, match=rf"checkpoint 'orders' in {db} is corrupt \(its source "
                                   rf"identity cannot be read.*checkpoint reset"):
        store.load("orders")


# -- a schema-1 file (before source_identity) ---------------------------------------------

def _schema_1_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE agora_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO agora_meta VALUES ('checkpoints.schema_version', '1');"
        "CREATE TABLE agora_checkpoints (key TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL,"
        " run_id TEXT NOT NULL, source TEXT NOT NULL, value TEXT NOT NULL,"
        " recorded_at TEXT NOT NULL);"
        f"INSERT INTO agora_checkpoints VALUES ('a', 'a', 'r0', 's', '{{\"n\":1}}', '{STAMP}');"
        f"INSERT INTO agora_checkpoints VALUES ('b', 'b', 'r0', 's', '[2]', '{STAMP}');")
    conn.commit()
    conn.close()
    path.chmod(0o600)
    return path


def test_a_schema_1_file_is_read_as_it_is_then_upgraded_by_the_first_save(
        tmp_path: Path) -> None:
    db = _schema_1_file(tmp_path / "v1.db")
    with SyncSQLiteCheckpointStore(db, create=False) as store:
        assert store.list_keys() == ["a", "b"]
        assert store.load("a") == Checkpoint("a", "r0", "s", {"n": 1}, STAMP)
    conn = sqlite3.connect(db)
    assert "source_identity" not in {r[1] for r in conn.execute(
        "PRAGMA table_info(agora_checkpoints)")}  # reading changed nothing
    conn.close()
    identity = _identity(tmp_path)
    with SyncSQLiteCheckpointStore(db) as store:
        store.save("c", Checkpoint("c", "r1", "s", 3, source_identity=identity))
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.list_keys() == ["a", "b", "c"]
        assert store.load("b") == Checkpoint("b", "r0", "s", [2], STAMP)
        loaded = store.load("c")
    assert loaded is not None and loaded.source_identity == identity
    conn = sqlite3.connect(db)
    version = conn.execute("SELECT value FROM agora_meta "
                           "WHERE key = 'checkpoints.schema_version'").fetchone()
    conn.close()
    assert version == ("2",)


def test_a_file_from_a_newer_schema_is_refused_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.db"
    with SyncSQLiteCheckpointStore(db) as store:
        store.save("k", Checkpoint("k", "r", "s", 1))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE agora_meta SET value = '3' WHERE key = 'checkpoints.schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(CheckpointError, match=r"schema version 3, written by a newer Agora; "
                                              r"this version reads schema 2 — upgrade Agora"):
        SyncSQLiteCheckpointStore(db).load("k")


# -- 0.3.0's checkpoint file ---------------------------------------------------------------

def test_a_legacy_file_is_read_as_it_is_without_changing_it(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    upstream_identity = {"uri": Path(identity.path).as_uri(), "size_bytes": identity.size,
                         "modified_time_ns": identity.modified_ns, "device": 1, "inode": 2}
    db = _legacy_file(tmp_path / "old.db", {
        "checkpoint:orders": _payload("orders", 7, source_identity=upstream_identity),
        "checkpoint:pay": _payload("pay", 9),
        "cache:other": {"not": "a checkpoint"}})
    before = _digest(db)
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.list_keys() == ["orders", "pay"]
        loaded = store.load("orders")
        assert store.load("missing") is None
    assert loaded == Checkpoint("orders", "run-1", "orders_source", {"index": 7}, STAMP,
                                source_identity=identity)
    assert _digest(db) == before and _tables(db) == {"state_store"}


def test_the_first_save_adopts_a_legacy_file_keeping_its_rows_for_0_3_0(
        tmp_path: Path) -> None:
    db = _legacy_file(tmp_path / "old.db", {"checkpoint:orders": _payload("orders", 7),
                                            "cache:other": [1]})
    identity = _identity(tmp_path)
    with SyncSQLiteCheckpointStore(db) as store:
        store.save("pay", Checkpoint("pay", "run-2", "pay_source", {"index": 9}, STAMP,
                                     source_identity=identity))
        store.save("orders", Checkpoint("orders", "run-2", "orders_source", {"index": 8},
                                        STAMP))
    assert {"agora_meta", "agora_checkpoints", "state_store"} <= _tables(db)
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.list_keys() == ["orders", "pay"]
        orders, pay = store.load("orders"), store.load("pay")
    assert orders is not None and orders.value == {"index": 8}
    assert pay is not None and pay.source_identity == identity
    rows = _state_store(db)
    # Saves are mirrored in 0.3.0's own form, so 0.3.0 pointed at the file resumes from them.
    assert rows["checkpoint:orders"] == ({**_payload("orders", 8), "run_id": "run-2",
                                          "source_identity": None}, None)
    assert rows["checkpoint:pay"][0]["source_identity"] == {
        "uri": Path(identity.path).as_uri(), "size_bytes": identity.size,
        "modified_time_ns": identity.modified_ns, "device": None, "inode": None}
    assert rows["cache:other"] == ([1], None)  # rows that are not checkpoints stay


def test_an_adopted_file_keeps_the_legacy_checkpoints_it_was_not_written_to(
        tmp_path: Path) -> None:
    db = _legacy_file(tmp_path / "old.db", {"checkpoint:a": _payload("a", 1),
                                            "checkpoint:b": _payload("b", 2)}, expires=True)
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.reset("a") is True
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.list_keys() == ["b"]
        assert store.load("b") == Checkpoint("b", "run-1", "b_source", {"index": 2}, STAMP)
    assert set(_state_store(db)) == {"checkpoint:b"}  # the reset reached 0.3.0's table too


@pytest.mark.parametrize(("value", "why"), [
    ("not json", r"its value is not valid JSON"),
    ([1, 2], r"its value is a JSON list, not an object"),
    ({"pipeline_id": "x"}, r"it lacks the fields \['run_id', 'source', 'value', 'recorded_at'\]"),
    ({**_payload("x", 1), "run_id": 5}, r"the fields \['run_id'\] must be strings"),
    ({**_payload("x", 1), "source_identity": {"uri": 3}}, r"a 0.3.0 source identity must be"),
    ('{"pipeline_id": "x", "run_id": "r", "source": "s", "value": NaN, "recorded_at": "t"}',
     r"its value is not a JSON value Agora can store"),
])
def test_a_corrupt_legacy_row_fails_adoption_naming_file_and_key_and_changes_nothing(
        tmp_path: Path, value: Any, why: str) -> None:
    db = _legacy_file(tmp_path / "old.db", {"checkpoint:good": _payload("good", 1),
                                            "checkpoint:bad": value})
    before = _digest(db)
    expected = (rf"checkpoint 'bad' in {db}, a checkpoint file of Agora 0\.3\.0 \(row "
                rf"'checkpoint:bad' of table state_store\), cannot be read: {why}.*Nothing was "
                rf"changed — fix or delete that row")
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.load("good") is not None  # a reader still reads the good rows
        with pytest.raises(CheckpointError, match=expected):
            store.load("bad")
        with pytest.raises(CheckpointError, match=expected):
            store.save("other", Checkpoint("other", "r", "s", 1))
    assert _digest(db) == before and _tables(db) == {"state_store"}


@pytest.mark.parametrize("setup", [
    "CREATE TABLE state_store (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO state_store VALUES ('cache:x', '1');",  # no checkpoint rows
    "CREATE TABLE state_store (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO state_store VALUES ('checkpoint:x', '{}');"
    "CREATE TABLE other (a);",  # another table beside it
    "CREATE TABLE state_store (key TEXT PRIMARY KEY, value TEXT NOT NULL, owner TEXT);"
    "INSERT INTO state_store VALUES ('checkpoint:x', '{}', 'me');",  # another shape
])
def test_a_file_that_is_not_exactly_0_3_0s_is_still_refused_as_foreign(
        tmp_path: Path, setup: str) -> None:
    db = tmp_path / "foreign.db"
    conn = sqlite3.connect(db)
    conn.executescript(setup)
    conn.commit()
    conn.close()
    db.chmod(0o600)
    tables, rows = _tables(db), _state_store_raw(db)
    for create in (True, False):
        with pytest.raises(CheckpointError, match=r"an SQLite database without Agora's "
                                                  r"checkpoints tables"):
            SyncSQLiteCheckpointStore(db, create=create).save("x", Checkpoint("x", "r", "s", 1))
    assert (_tables(db), _state_store_raw(db)) == (tables, rows)  # no table or row added


def _state_store_raw(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM state_store ORDER BY key").fetchall()
    finally:
        conn.close()


def test_a_legacy_file_writable_by_others_is_refused_before_it_is_read(tmp_path: Path) -> None:
    db = _legacy_file(tmp_path / "old.db", {"checkpoint:a": _payload("a", 1)})
    db.chmod(0o666)
    with pytest.raises(CheckpointError, match=r"old\.db"):
        SyncSQLiteCheckpointStore(db).load("a")
    assert _tables(db) == {"state_store"}


def test_checkpoint_show_reads_a_legacy_file_read_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    identity = _identity(tmp_path)
    db = _legacy_file(tmp_path / "old.db", {
        "checkpoint:orders": _payload("orders", 7, source_identity={
            "uri": Path(identity.path).as_uri(), "size_bytes": identity.size,
            "modified_time_ns": identity.modified_ns}),
        "checkpoint:plain": _payload("plain", 1)})
    before = _digest(db)
    assert main(["checkpoint", "show", str(db)]) == 0
    out = capsys.readouterr().out
    assert f'"source_identity": {json.dumps(identity.to_dict())}' in out
    plain_line = next(line for line in out.splitlines() if line.startswith("plain:"))
    assert "source_identity" not in plain_line  # printed only when set
    assert main(["checkpoint", "show", str(db), "--key", "orders", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["orders"]["source_identity"] == identity.to_dict()
    assert shown["orders"]["value"] == {"index": 7}
    assert _digest(db) == before and _tables(db) == {"state_store"}


# -- writes that cannot complete leave everything as it was -------------------------------

def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, mid-transaction: the file's write lock is taken."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_an_adoption_that_cannot_take_the_write_lock_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agora.stores.checkpoint_legacy._BUSY_TIMEOUT_S", 0.05)
    db = _legacy_file(tmp_path / "old.db", {"checkpoint:a": _payload("a", 1)})
    holder = _hold_write_lock(db)
    try:
        with SyncSQLiteCheckpointStore(db) as store, pytest.raises(
                CheckpointError, match=rf"cannot upgrade {db}, a checkpoint file of Agora "
                                       rf"0\.3\.0.*Nothing was changed"):
            store.save("b", Checkpoint("b", "r", "s", 2))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _tables(db) == {"state_store"}
    with SyncSQLiteCheckpointStore(db) as store:  # once the lock is free, adoption works
        store.save("b", Checkpoint("b", "r", "s", 2))
        assert store.list_keys() == ["a", "b"]


def test_a_schema_upgrade_that_cannot_take_the_write_lock_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agora.stores._files.BUSY_TIMEOUT_S", 0.05)
    db = _schema_1_file(tmp_path / "v1.db")
    with SyncSQLiteCheckpointStore(db) as store:
        assert store.list_keys() == ["a", "b"]  # opened (WAL mode), not yet upgraded
        holder = _hold_write_lock(db)
        try:
            with pytest.raises(CheckpointError, match=rf"cannot upgrade checkpoints file "
                                                      rf"{db} to schema 2.*Nothing was changed"):
                store.save("c", Checkpoint("c", "r", "s", 3))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        store.save("c", Checkpoint("c", "r", "s", 3))  # the next save upgrades and saves
        assert store.list_keys() == ["a", "b", "c"]


def test_a_save_whose_mirror_write_fails_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    db = _legacy_file(tmp_path / "old.db", {"checkpoint:a": _payload("a", 1)})
    with SyncSQLiteCheckpointStore(db) as store:
        store.save("a", Checkpoint("a", "r2", "s", 2))  # adopts the file
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE state_store RENAME TO moved_away")  # 0.3.0's table vanishes
    conn.commit()
    conn.close()
    with SyncSQLiteCheckpointStore(db) as store:
        with pytest.raises(CheckpointError, match=r"cannot save checkpoint 'a' .* the previous "
                                                  r"checkpoint is intact"):
            store.save("a", Checkpoint("a", "r3", "s", 3))
        kept = store.load("a")
    assert kept is not None and (kept.run_id, kept.value) == ("r2", 2)  # both or neither
