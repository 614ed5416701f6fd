"""Stores in folders other users can write to: planted links, other users' files, wide
modes, files swapped while opening — and the parent folders the stores create."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agora.errors import CheckpointError
from agora.sinks.base import SinkState
from agora.stores import (
    DLQError,
    JsonLinesDLQSink,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
    _files,
)

NOBODY = 65534  # the conventional unprivileged uid; tests that chown need root


def give_away(path: Path) -> None:
    """Make ``path`` another user's file (root only: skip the test otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user (uid 65534)")
    os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def lock_path(store: SyncSQLiteCheckpointStore, key: str) -> Path:
    digest16 = hashlib.sha256(key.encode()).hexdigest()[:16]
    return store.path.with_name(f"{store.path.name}.{digest16}.lock")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file the test owns that a planted link points to; it must never change."""
    path = tmp_path / "victim.txt"
    path.write_bytes(b"precious data owned by the user running the test\n")
    return path


@pytest.fixture
def saved_store(tmp_path: Path, make_checkpoint: Callable[..., object]) -> Path:
    """A real checkpoint file with key 'k' at offset 1000 (a forged one, for the attacker)."""
    path = tmp_path / "forged.db"
    store = SyncSQLiteCheckpointStore(path)
    store.save("k", make_checkpoint({"offset": 1000}))  # type: ignore[arg-type]
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most permissive umask: created files and folders must still be private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def open_dlq(sink: SQLiteDLQSink | JsonLinesDLQSink) -> None:
    async def main() -> None:
        await sink.open()
        await sink.close()

    asyncio.run(main())


# -- checkpoint database --------------------------------------------------------------------


def test_planted_link_at_the_checkpoint_file_is_refused(
    tmp_path: Path, saved_store: Path
) -> None:
    before = digest(saved_store)
    path = tmp_path / "ckpt.db"
    path.symlink_to(saved_store)  # a valid store elsewhere: still never followed
    store = SyncSQLiteCheckpointStore(path)
    with pytest.raises(CheckpointError) as info:
        store.load("k")
    message = str(info.value)
    assert f"{path} is a symbolic link (to {saved_store})" in message
    assert "remove the link" in message
    assert digest(saved_store) == before
    assert not Path(f"{saved_store}-wal").exists()  # SQLite never opened it


def test_forged_checkpoint_file_of_another_user_is_refused(saved_store: Path) -> None:
    give_away(saved_store)
    before = digest(saved_store)
    store = SyncSQLiteCheckpointStore(saved_store)
    with pytest.raises(CheckpointError) as info:
        store.load("k")  # would have resumed at offset 1000, skipping the input before it
    message = str(info.value)
    assert f"{saved_store} is owned by uid {NOBODY}" in message
    assert f"chown {os.geteuid()} {saved_store}" in message and "another path" in message
    assert digest(saved_store) == before
    assert os.stat(saved_store).st_uid == NOBODY


@pytest.mark.parametrize("wide", [0o620, 0o602, 0o666])
def test_checkpoint_file_writable_by_group_or_others_is_refused(
    saved_store: Path, wide: int
) -> None:
    os.chmod(saved_store, wide)
    before = digest(saved_store)
    with pytest.raises(CheckpointError, match=rf"mode 0{wide:o}: group or others can write it"):
        SyncSQLiteCheckpointStore(saved_store).load("k")
    assert digest(saved_store) == before
    assert mode(saved_store) == wide  # refused, not silently "fixed"
    os.chmod(saved_store, 0o600)  # the fix the message gives works
    store = SyncSQLiteCheckpointStore(saved_store)
    try:
        loaded = store.load("k")
        assert loaded is not None and loaded.value == {"offset": 1000}
    finally:
        store.close()


def test_named_pipe_at_the_checkpoint_path_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"
    os.mkfifo(path)
    with pytest.raises(CheckpointError, match="is a named pipe, not a regular file"):
        SyncSQLiteCheckpointStore(path).open()


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_planted_link_at_an_sqlite_side_file_is_refused(
    saved_store: Path, victim: Path, suffix: str
) -> None:
    before = digest(victim)
    side = Path(f"{saved_store}{suffix}")
    side.symlink_to(victim)
    with pytest.raises(CheckpointError, match=rf"{side} is a symbolic link"):
        SyncSQLiteCheckpointStore(saved_store).load("k")
    assert digest(victim) == before and side.is_symlink()


def test_write_ahead_log_of_another_user_is_refused(saved_store: Path) -> None:
    wal = Path(f"{saved_store}-wal")
    wal.write_bytes(b"")  # an empty WAL: harmless content, but another user's file
    give_away(wal)
    with pytest.raises(CheckpointError, match=rf"SQLite wal file: {wal} is owned by uid"):
        SyncSQLiteCheckpointStore(saved_store).load("k")
    assert wal.stat().st_size == 0


def test_group_writable_side_file_is_refused(saved_store: Path) -> None:
    shm = Path(f"{saved_store}-shm")
    shm.write_bytes(b"")
    os.chmod(shm, 0o660)
    with pytest.raises(CheckpointError, match=rf"{shm} has mode 0660.*chmod 600"):
        SyncSQLiteCheckpointStore(saved_store).load("k")


def test_file_swapped_between_the_check_and_sqlites_open_is_refused(
    tmp_path: Path, saved_store: Path, make_checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.db"
    SyncSQLiteCheckpointStore(path).close()
    SyncSQLiteCheckpointStore(path).open()  # created and checked: ours
    real_connect = _files._connect

    def swap_then_connect(name: Path) -> sqlite3.Connection:
        os.replace(saved_store, path)  # "another user" renames a forged store into place
        return real_connect(name)

    monkeypatch.setattr(_files, "_connect", swap_then_connect)
    with pytest.raises(CheckpointError, match="was replaced by another file while it was"):
        SyncSQLiteCheckpointStore(path).load("k")


def test_creation_temp_file_swapped_before_sqlite_opens_it_is_refused(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digest(victim)
    real_connect = _files._connect

    def swap_then_connect(name: Path) -> sqlite3.Connection:
        if ".agora-init-" in name.name:
            name.unlink()
            name.symlink_to(victim)  # an attacker racing for the temporary name
        return real_connect(name)

    monkeypatch.setattr(_files, "_connect", swap_then_connect)
    path = tmp_path / "ckpt.db"
    with pytest.raises(CheckpointError, match="was replaced by another file"):
        SyncSQLiteCheckpointStore(path).open()
    assert digest(victim) == before
    assert not path.exists() and not list(tmp_path.glob(".ckpt.db.agora-init-*"))


# -- lock files ------------------------------------------------------------------------------


def test_planted_link_at_the_lock_file_is_refused(tmp_path: Path, victim: Path) -> None:
    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    lock = lock_path(store, "pipe")
    lock.symlink_to(victim)
    before = digest(victim)
    with pytest.raises(CheckpointError, match=rf"lock file of .*{lock} is a symbolic link"):
        store.claim("pipe")
    assert digest(victim) == before  # the run's PID was not written over it
    store.close()
    lock.unlink()
    store.claim("pipe")  # nothing of the refused claim lingers
    store.close()


def test_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    lock = lock_path(store, "pipe")
    lock.write_bytes(b"4242")
    give_away(lock)
    with pytest.raises(CheckpointError, match=rf"{lock} is owned by uid {NOBODY}"):
        store.claim("pipe")
    assert lock.read_bytes() == b"4242"
    store.close()


def test_group_writable_lock_file_is_refused(tmp_path: Path) -> None:
    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    lock = lock_path(store, "pipe")
    lock.write_bytes(b"")
    os.chmod(lock, 0o666)
    with pytest.raises(CheckpointError, match=r"has mode 0666.*chmod 600"):
        store.claim("pipe")
    store.close()


def test_lock_file_is_created_owner_only(tmp_path: Path, umask_zero: None) -> None:
    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    store.claim("pipe")
    try:
        assert mode(lock_path(store, "pipe")) == 0o600
    finally:
        store.close()


# -- DLQ files -------------------------------------------------------------------------------


def test_planted_link_at_the_sqlite_dlq_is_refused(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "dlq.db"
    path.symlink_to(victim)
    before = digest(victim)
    sink = SQLiteDLQSink(path)
    with pytest.raises(DLQError, match=rf"{path} is a symbolic link"):
        open_dlq(sink)
    assert digest(victim) == before and sink.state is SinkState.NEW


def test_sqlite_dlq_of_another_user_is_refused(
    tmp_path: Path, make_dlq_record: Callable[..., object]
) -> None:
    path = tmp_path / "dlq.db"
    open_dlq(SQLiteDLQSink(path))  # "their" DLQ
    Path(f"{path}-wal").unlink(missing_ok=True)
    give_away(path)
    before = digest(path)
    sink = SQLiteDLQSink(path)
    with pytest.raises(DLQError, match=rf"{path} is owned by uid {NOBODY}"):
        open_dlq(sink)
    assert digest(path) == before  # no row with personal data landed in their file


def test_planted_link_at_the_json_lines_dlq_is_refused(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "dlq.jsonl"
    path.symlink_to(victim)
    before = digest(victim)
    sink = JsonLinesDLQSink(path)
    with pytest.raises(DLQError, match=rf"DLQ file of sink 'jsonl_dlq': {path} is a symbolic"):
        open_dlq(sink)
    assert digest(victim) == before and sink.state is SinkState.NEW


def test_json_lines_dlq_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dlq.jsonl"
    path.write_bytes(b"")
    give_away(path)
    with pytest.raises(DLQError, match=rf"{path} is owned by uid {NOBODY}.*chown"):
        open_dlq(JsonLinesDLQSink(path))
    assert path.read_bytes() == b""


def test_group_writable_json_lines_dlq_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dlq.jsonl"
    path.write_bytes(b"")
    os.chmod(path, 0o664)
    with pytest.raises(DLQError, match=rf"{path} has mode 0664.*chmod 600 {path}"):
        open_dlq(JsonLinesDLQSink(path))


# -- parent folders --------------------------------------------------------------------------


def test_readme_example_paths_work_in_a_fresh_folder(
    tmp_path: Path, make_checkpoint, make_dlq_record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SyncSQLiteCheckpointStore("state/checkpoints.db")
    store.claim("orders")
    store.save("orders", make_checkpoint(7))
    store.close()
    dlq = SQLiteDLQSink("state/dlq.db")

    async def capture() -> None:
        await dlq.open()
        await dlq.write(make_dlq_record(1))
        await dlq.close()

    asyncio.run(capture())
    assert mode(tmp_path / "state") == 0o700
    assert [r.record for r in SQLiteDLQSink.read("state/dlq.db")] == [{"id": 1, "name": "row-1"}]


@pytest.mark.parametrize("opener", ["checkpoints", "sqlite_dlq", "jsonl_dlq"])
def test_missing_parent_folders_are_created_private_and_existing_ones_untouched(
    tmp_path: Path, umask_zero: None, opener: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)  # a sticky, world-writable folder, like /tmp
    path = shared / "team" / "job" / ("state.jsonl" if opener == "jsonl_dlq" else "state.db")
    if opener == "checkpoints":
        SyncSQLiteCheckpointStore(path).open()
    elif opener == "sqlite_dlq":
        open_dlq(SQLiteDLQSink(path))
    else:
        open_dlq(JsonLinesDLQSink(path))
    assert mode(shared) == 0o1777  # an existing folder is never changed
    assert mode(shared / "team") == 0o700 and mode(shared / "team" / "job") == 0o700
    assert mode(path) == 0o600


def test_a_file_where_a_folder_should_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"cannot create the folder .*state/run for the"):
        SyncSQLiteCheckpointStore(tmp_path / "state" / "run" / "ckpt.db").open()
    with pytest.raises(DLQError, match=r"cannot create the folder .*state/run for the DLQ"):
        open_dlq(JsonLinesDLQSink(tmp_path / "state" / "run" / "dlq.jsonl"))
    assert (tmp_path / "state").read_text() == "not a folder"


def test_inspection_with_create_false_creates_no_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        SyncSQLiteCheckpointStore(tmp_path / "nope" / "ckpt.db", create=False).open()
    assert not (tmp_path / "nope").exists()


# -- the remaining failure paths of the file helpers ----------------------------------------


def test_a_file_name_the_os_refuses_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 300 + ".jsonl")  # longer than any file name may be
    with pytest.raises(DLQError, match=r"cannot create the DLQ file of sink 'jsonl_dlq' .*x{10}"):
        open_dlq(JsonLinesDLQSink(path))


def test_a_directory_at_the_json_lines_dlq_path_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "dlq.jsonl"
    path.mkdir()
    with pytest.raises(DLQError, match=rf"cannot open the DLQ file of sink .* {path}"):
        open_dlq(JsonLinesDLQSink(path))
    assert path.is_dir()


def test_a_file_that_keeps_vanishing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agora import _safe_files

    def racing_open(path: object, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            raise FileExistsError(errno_eexist, "exists", str(path))  # someone created it …
        raise FileNotFoundError(errno_enoent, "gone", str(path))  # … and deleted it again

    errno_eexist, errno_enoent = 17, 2
    monkeypatch.setattr(_safe_files.os, "open", racing_open)
    with pytest.raises(CheckpointError, match="keeps disappearing"):
        _safe_files.open_trusted(tmp_path / "x", os.O_RDWR, what="lock file",
                                 error=CheckpointError)


def test_a_new_folder_swapped_for_a_link_is_not_chmodded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chmod(elsewhere, 0o755)
    real_mkdir = os.mkdir

    def mkdir_then_swap(path: object, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        os.rmdir(path)
        os.symlink(elsewhere, path)  # "another user" swaps the new folder for a link

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(CheckpointError, match=r"folder .*state for the .* changed while it was"):
        SyncSQLiteCheckpointStore(tmp_path / "state" / "ckpt.db").open()
    monkeypatch.undo()
    assert mode(elsewhere) == 0o755 and not list(elsewhere.iterdir())


def test_a_store_file_deleted_while_sqlite_opens_it_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.db"
    SyncSQLiteCheckpointStore(path).open()
    real_connect = _files._connect

    def delete_then_connect(name: Path) -> sqlite3.Connection:
        conn = real_connect(name)
        name.unlink()  # deleted right after SQLite opened it
        return conn

    monkeypatch.setattr(_files, "_connect", delete_then_connect)
    with pytest.raises(CheckpointError, match="vanished while it was being opened"):
        SyncSQLiteCheckpointStore(path).open()
