"""SyncSQLiteCheckpointStore at rest and under faults: file modes, SIGKILL, corruption."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agora.errors import CheckpointError
from agora.stores import SyncSQLiteCheckpointStore, SQLiteDLQSink, _files

REPO_ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _raw(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def _saved_store(path: Path, make_checkpoint, **values) -> None:
    store = SyncSQLiteCheckpointStore(path)
    for key, value in values.items():
        store.save(key, make_checkpoint(value))
    store.close()


# -- owner-only files ---------------------------------------------------------------------


def test_store_and_its_wal_files_are_owner_only(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    old_umask = os.umask(0o000)  # the most permissive umask must not widen the files
    try:
        store = SyncSQLiteCheckpointStore(path)
        store.save("k", make_checkpoint(1))
    finally:
        os.umask(old_umask)
    try:
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert file.exists(), file
            assert _mode(file) == 0o600, file
    finally:
        store.close()
    assert not list(tmp_path.glob(".*agora-init*"))  # the creation temp file is gone


def test_wide_sidecar_files_are_tightened_on_open(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")  # an empty WAL is a valid "no WAL"
    os.chmod(wal, 0o644)
    store = SyncSQLiteCheckpointStore(path)
    try:
        loaded = store.load("k")
        assert loaded is not None and loaded.value == 1
        assert _mode(wal) == 0o600
    finally:
        store.close()


def test_existing_database_keeps_the_mode_its_owner_chose(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    os.chmod(path, 0o640)
    store = SyncSQLiteCheckpointStore(path)
    store.open()
    store.close()
    assert _mode(path) == 0o640


# -- durability -----------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from agora.records import Checkpoint
    from agora.stores.checkpoint_sqlite import SyncSQLiteCheckpointStore

    store = SyncSQLiteCheckpointStore(sys.argv[1])
    for i in range(int(sys.argv[2])):
        store.save("pipe", Checkpoint("pipe", "run-1", "numbers", {"offset": i, "tag": "x" * 50}))
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: the store must not care
    """
)


@pytest.mark.timeout(60)
def test_saved_checkpoint_survives_sigkill_of_the_writer(tmp_path: Path, no_orphans) -> None:
    path = tmp_path / "ckpt.db"
    saves = 200
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path), str(saves)],
        env=env, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert Path(f"{path}-wal").exists()  # a stale WAL from the crash: SQLite recovers it
    store = SyncSQLiteCheckpointStore(path)
    try:
        loaded = store.load("pipe")
        assert loaded is not None
        assert loaded.value == {"offset": saves - 1, "tag": "x" * 50}
    finally:
        store.close()


# -- fail-closed opening --------------------------------------------------------------------


def test_garbage_file_is_refused_naming_file_and_recovery(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"
    path.write_bytes(b"this is not a database, just some text\n" * 100)
    with pytest.raises(CheckpointError) as info:
        SyncSQLiteCheckpointStore(path).load("k")
    message = str(info.value)
    assert str(path) in message and "not an SQLite database" in message
    assert "from scratch" in message and "backup" in message
    assert path.read_bytes().startswith(b"this is not")  # untouched


def test_zero_byte_file_is_truncation_not_a_fresh_start(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\).*never starts from scratch"):
        SyncSQLiteCheckpointStore(path).load("k")
    assert path.stat().st_size == 0  # not silently initialised


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    _raw(path, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(CheckpointError, match="without Agora's checkpoints tables"):
        SyncSQLiteCheckpointStore(path).list_keys()


def test_dlq_only_file_is_not_silently_adopted_as_a_checkpoint_store(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "dlq.db"
    sink = SQLiteDLQSink(path)
    asyncio.run(sink.open())
    asyncio.run(sink.close())
    with pytest.raises(CheckpointError, match="without Agora's checkpoints tables"):
        SyncSQLiteCheckpointStore(path).load("k")


def test_checkpoint_file_from_a_newer_agora_is_refused(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    _raw(path, "UPDATE agora_meta SET value = '99' WHERE key = 'checkpoints.schema_version'")
    with pytest.raises(CheckpointError, match="schema version 99, written by a newer Agora"):
        SyncSQLiteCheckpointStore(path).load("k")


def test_garbled_schema_version_is_refused(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    _raw(path, "UPDATE agora_meta SET value = 'one' WHERE key = 'checkpoints.schema_version'")
    with pytest.raises(CheckpointError, match="non-integer checkpoints.schema_version"):
        SyncSQLiteCheckpointStore(path).load("k")


def test_damaged_database_pages_are_refused(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, **{f"key-{i}": "v" * 2000 for i in range(100)})
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # keep the header, smash the pages after it
        fh.seek(4096)
        fh.write(os.urandom(size - 8192))
    with pytest.raises(CheckpointError, match=str(path)):
        SyncSQLiteCheckpointStore(path).load("key-1")


def test_truncated_database_is_refused(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, **{f"key-{i}": "v" * 2000 for i in range(100)})
    os.truncate(path, path.stat().st_size // 3)
    with pytest.raises(CheckpointError, match=str(path)):
        SyncSQLiteCheckpointStore(path).load("key-1")


def test_missing_database_with_leftover_wal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"
    Path(f"{path}-wal").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="missing but its write-ahead log"):
        SyncSQLiteCheckpointStore(path).load("k")
    assert not path.exists()


def test_create_false_refuses_a_missing_file_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"
    with pytest.raises(CheckpointError, match="does not exist"):
        SyncSQLiteCheckpointStore(path, create=False).open()
    assert not path.exists()


def test_parent_that_is_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"cannot use .*state as the folder .*not a folder"):
        SyncSQLiteCheckpointStore(tmp_path / "state" / "ckpt.db").open()
    assert (tmp_path / "state").read_text() == "not a folder"


def test_a_directory_at_the_store_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory, not a regular file"):
        SyncSQLiteCheckpointStore(tmp_path).open()


def test_leftover_creation_temp_file_is_harmless(tmp_path: Path, make_checkpoint) -> None:
    (tmp_path / ".ckpt.db.agora-init-abc123").write_bytes(b"half-written")
    _saved_store(tmp_path / "ckpt.db", make_checkpoint, k=5)
    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    try:
        loaded = store.load("k")
        assert loaded is not None and loaded.value == 5
    finally:
        store.close()


# -- corrupt rows ---------------------------------------------------------------------------


def test_row_with_corrupt_json_is_refused_with_reset_command(
    tmp_path: Path, make_checkpoint
) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1, other=2)
    _raw(path, "UPDATE agora_checkpoints SET value = ? WHERE key = 'k'", ('{"offset": 1',))
    store = SyncSQLiteCheckpointStore(path)
    try:
        with pytest.raises(CheckpointError) as info:
            store.load("k")
        assert f"agora checkpoint reset --store {path} --key k" in str(info.value)
        assert "not valid JSON" in str(info.value)
        other = store.load("other")  # the damage is confined to one key
        assert other is not None and other.value == 2
        assert store.reset("k") is True  # and the documented recovery works
        assert store.load("k") is None
    finally:
        store.close()


def test_row_with_wrong_field_type_is_refused(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    _raw(path, "UPDATE agora_checkpoints SET source = X'00ff' WHERE key = 'k'")
    with pytest.raises(CheckpointError, match="wrong type"):
        SyncSQLiteCheckpointStore(path).load("k")


def test_table_dropped_under_an_open_store_is_an_error(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    store = SyncSQLiteCheckpointStore(path)
    try:
        store.save("k", make_checkpoint(1))
        _raw(path, "DROP TABLE agora_checkpoints")
        with pytest.raises(CheckpointError, match="cannot read checkpoint 'k'"):
            store.load("k")
        with pytest.raises(CheckpointError, match="cannot list checkpoints"):
            store.list_keys()
        with pytest.raises(CheckpointError, match="cannot save checkpoint 'k'"):
            store.save("k", make_checkpoint(2))
        with pytest.raises(CheckpointError, match="cannot reset checkpoint 'k'"):
            store.reset("k")
    finally:
        store.close()


# -- write failures -------------------------------------------------------------------------


def test_failed_save_raises_and_keeps_the_previous_checkpoint(
    tmp_path: Path, make_checkpoint, short_busy_timeout
) -> None:
    path = tmp_path / "ckpt.db"
    store = SyncSQLiteCheckpointStore(path)
    store.save("k", make_checkpoint("old"))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        expected = "cannot save checkpoint 'k'.*previous checkpoint is intact"
        with pytest.raises(CheckpointError, match=expected):
            store.save("k", make_checkpoint("new"))
        with pytest.raises(CheckpointError, match="cannot reset checkpoint 'k'"):
            store.reset("k")
        blocker.execute("ROLLBACK")
        loaded = store.load("k")
        assert loaded is not None and loaded.value == "old"
        store.save("k", make_checkpoint("new"))  # the store is usable again
        again = store.load("k")
        assert again is not None and again.value == "new"
    finally:
        blocker.close()
        store.close()


# -- creation races and odd filesystems ------------------------------------------------------


def test_creation_falls_back_to_rename_without_hard_links(
    tmp_path: Path, make_checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError("hard links not supported here")

    monkeypatch.setattr(_files.os, "link", no_links)
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=3)
    assert _mode(path) == 0o600
    assert not list(tmp_path.glob(".*agora-init*"))
    monkeypatch.undo()
    store = SyncSQLiteCheckpointStore(path)
    try:
        loaded = store.load("k")
        assert loaded is not None and loaded.value == 3
    finally:
        store.close()


def test_concurrent_creator_winning_the_race_is_fine(
    tmp_path: Path, make_checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def racing_link(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        real_link(src, dst)  # "another process" put an initialised store there first
        raise FileExistsError(dst)

    monkeypatch.setattr(_files.os, "link", racing_link)
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=4)
    monkeypatch.undo()
    store = SyncSQLiteCheckpointStore(path)
    try:
        loaded = store.load("k")
        assert loaded is not None and loaded.value == 4
    finally:
        store.close()


class _NoWalConnection:
    """Wraps a real connection but reports that WAL mode could not be enabled."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: object) -> object:
        if sql.startswith("PRAGMA journal_mode"):
            return self._conn.execute("SELECT 'delete'")
        return self._conn.execute(sql, *args)

    def close(self) -> None:
        self._conn.close()


def test_filesystem_without_wal_support_is_refused(
    tmp_path: Path, make_checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.db"
    _saved_store(path, make_checkpoint, k=1)
    real_connect = _files._connect
    monkeypatch.setattr(_files, "_connect", lambda p: _NoWalConnection(real_connect(p)))
    with pytest.raises(CheckpointError, match="cannot switch to WAL journal mode"):
        SyncSQLiteCheckpointStore(path).open()
