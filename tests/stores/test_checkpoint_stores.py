"""The CheckpointStore contract, run against both built-in stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agora.errors import CheckpointError
from agora.records import Checkpoint
from agora.stores import CheckpointStore, SyncInMemoryCheckpointStore, SyncSQLiteCheckpointStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    if request.param == "memory":
        s: CheckpointStore = SyncInMemoryCheckpointStore()
    else:
        s = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    yield s
    s.close()


def test_load_of_unsaved_key_is_none(store: CheckpointStore) -> None:
    assert store.load("never-saved") is None


def test_save_then_load_round_trips_every_field(store: CheckpointStore) -> None:
    saved = Checkpoint("pipe", "run-7", "csv:/data/in.csv", {"file": "a.csv", "line": 42})
    store.save("pipe", saved)
    assert store.load("pipe") == saved


@pytest.mark.parametrize(
    "value",
    [None, 0, -3, 2.5, "offset-9", True, [], {}, [1, "two", None], {"nested": {"deep": [1.5]}},
     {"unicode": "zoë ✓ \u2028 line"}],
)
def test_any_json_value_round_trips(store: CheckpointStore, make_checkpoint, value) -> None:
    store.save("k", make_checkpoint(value))
    loaded = store.load("k")
    assert loaded is not None and loaded.value == value


def test_tuples_come_back_as_lists(store: CheckpointStore, make_checkpoint) -> None:
    store.save("k", make_checkpoint((3, "x")))
    loaded = store.load("k")
    assert loaded is not None and loaded.value == [3, "x"]


def test_save_replaces_the_previous_checkpoint(store: CheckpointStore, make_checkpoint) -> None:
    for i in range(5):
        store.save("k", make_checkpoint(i, run_id=f"run-{i}"))
    loaded = store.load("k")
    assert loaded is not None and (loaded.value, loaded.run_id) == (4, "run-4")
    assert store.list_keys() == ["k"]


def test_mutating_values_after_save_or_load_does_not_change_the_store(
    store: CheckpointStore, make_checkpoint
) -> None:
    value = {"offsets": [1, 2]}
    store.save("k", make_checkpoint(value))
    value["offsets"].append(3)
    loaded = store.load("k")
    assert loaded is not None
    loaded.value["offsets"].append(99)
    again = store.load("k")
    assert again is not None and again.value == {"offsets": [1, 2]}


def test_keys_are_isolated(store: CheckpointStore, make_checkpoint) -> None:
    store.save("pipe-a", make_checkpoint("a"))
    store.save("pipe-b", make_checkpoint("b"))
    a, b = store.load("pipe-a"), store.load("pipe-b")
    assert a is not None and b is not None and (a.value, b.value) == ("a", "b")
    assert store.load("pipe-c") is None


def test_list_keys_is_sorted(store: CheckpointStore, make_checkpoint) -> None:
    assert store.list_keys() == []
    for key in ("zeta", "alpha", "mid"):
        store.save(key, make_checkpoint(1))
    assert store.list_keys() == ["alpha", "mid", "zeta"]


def test_reset_deletes_and_reports_whether_there_was_one(
    store: CheckpointStore, make_checkpoint
) -> None:
    store.save("k", make_checkpoint(1))
    store.save("other", make_checkpoint(2))
    assert store.reset("k") is True
    assert store.load("k") is None
    assert store.reset("k") is False
    assert store.list_keys() == ["other"]


def test_sql_injection_in_key_is_just_a_key(store: CheckpointStore, make_checkpoint) -> None:
    evil = "k'); DROP TABLE agora_checkpoints; --"
    store.save("safe", make_checkpoint("safe"))
    store.save(evil, make_checkpoint("evil"))
    loaded = store.load(evil)
    assert loaded is not None and loaded.value == "evil"
    assert store.list_keys() == sorted(["safe", evil])
    assert store.reset("' OR '1'='1") is False
    assert store.list_keys() == sorted(["safe", evil])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1, 2}, "returned a set;"),
        (object(), "returned an object;"),
        (float("nan"), "returned the float nan;"),
        (float("inf"), "returned the float inf;"),
        ({"files": [1, {2}]}, "returned a dict containing a set at value['files'][1];"),
        ({1: "x"}, "returned a dict containing a dict key of type int (1);"),
        ([{"a": {2: 3}}], "returned a list containing a dict key of type int (2) at value[0]['a']"),
        (b"raw", "returned a bytes;"),
    ],
)
def test_non_json_value_is_refused_naming_source_and_type(
    store: CheckpointStore, make_checkpoint, value, expected: str
) -> None:
    with pytest.raises(CheckpointError) as info:
        store.save("k", make_checkpoint(value, source="my-source"))
    message = str(info.value)
    assert "current_checkpoint() of source 'my-source'" in message
    assert expected in message
    assert "checkpoints must be JSON values" in message
    assert store.load("k") is None  # nothing half-saved


def test_save_needs_a_checkpoint(store: CheckpointStore) -> None:
    with pytest.raises(TypeError, match="needs an agora.Checkpoint; got dict"):
        store.save("k", {"value": 1})  # type: ignore[arg-type]


def test_checkpoint_fields_must_be_strings(store: CheckpointStore) -> None:
    with pytest.raises(TypeError, match=r"Checkpoint.run_id must be a str; got int"):
        store.save("k", Checkpoint("pipe", 7, "src", 1))  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "error"), [("", ValueError), (None, TypeError), (3, TypeError)])
def test_bad_keys_are_refused(store: CheckpointStore, make_checkpoint, key, error) -> None:
    with pytest.raises(error, match="checkpoint key"):
        store.save(key, make_checkpoint(1))
    with pytest.raises(error, match="checkpoint key"):
        store.load(key)
    with pytest.raises(error, match="checkpoint key"):
        store.reset(key)


def test_close_is_idempotent_and_the_store_serves_a_later_run(
    store: CheckpointStore, make_checkpoint
) -> None:
    store.save("k", make_checkpoint(1))
    store.close()
    store.close()
    loaded = store.load("k")
    assert loaded is not None and loaded.value == 1
    store.save("k", make_checkpoint(2))
    again = store.load("k")
    assert again is not None and again.value == 2


def test_context_manager_opens_and_closes(store: CheckpointStore, make_checkpoint) -> None:
    with store as s:
        assert s is store
        s.save("k", make_checkpoint("v"))
    loaded = store.load("k")
    assert loaded is not None and loaded.value == "v"


def test_sqlite_save_is_visible_to_an_independent_reader(tmp_path: Path, make_checkpoint) -> None:
    path = tmp_path / "ckpt.db"
    store = SyncSQLiteCheckpointStore(path)
    store.save("k", make_checkpoint({"line": 10}))
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value, source FROM agora_checkpoints WHERE key = ?", ("k",))
        assert row.fetchone() == ('{"line":10}', "numbers")
    finally:
        conn.close()
        store.close()


def test_two_store_objects_on_one_file_see_each_others_saves(
    tmp_path: Path, make_checkpoint
) -> None:
    path = tmp_path / "ckpt.db"
    first, second = SyncSQLiteCheckpointStore(path), SyncSQLiteCheckpointStore(path)
    try:
        first.save("k", make_checkpoint(1))
        second.save("k", make_checkpoint(2))
        loaded = first.load("k")
        assert loaded is not None and loaded.value == 2  # last writer wins, atomically
    finally:
        first.close()
        second.close()


def test_repr_names_the_store(tmp_path: Path) -> None:
    assert "ckpt.db" in repr(SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"))
    assert repr(SyncInMemoryCheckpointStore()) == "SyncInMemoryCheckpointStore(keys=0)"


# -- fencing concurrent runs ----------------------------------------------------------------


def test_sqlite_claim_refuses_a_second_holder_of_the_key_until_released(tmp_path):
    from agora.errors import CheckpointError
    from agora.stores import SyncSQLiteCheckpointStore

    first = SyncSQLiteCheckpointStore(tmp_path / "c.db")
    second = SyncSQLiteCheckpointStore(tmp_path / "c.db")  # e.g. another run's store object
    first.claim("job")
    with pytest.raises(CheckpointError, match="'job'.*in use by"):
        second.claim("job")
    second.claim("other-job")  # other keys are independent
    first.release("job")
    second.claim("job")
    second.close()  # close() releases every claim
    first.claim("job")
    first.close()


@pytest.mark.timeout(60)
def test_sqlite_claim_is_held_across_processes_and_dies_with_its_holder(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from agora.errors import CheckpointError
    from agora.stores import SyncSQLiteCheckpointStore

    root = str(Path(__file__).resolve().parents[2])
    ready = tmp_path / "ready"
    script = (
        f"import sys, time; sys.path.insert(0, {root!r})\n"
        f"from agora.stores import SyncSQLiteCheckpointStore\n"
        f"s = SyncSQLiteCheckpointStore({str(tmp_path / 'c.db')!r}); s.claim('job')\n"
        f"open({str(ready)!r}, 'w').close(); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "the holder never claimed the key"
            time.sleep(0.02)
        store = SyncSQLiteCheckpointStore(tmp_path / "c.db")
        with pytest.raises(CheckpointError, match=f"pid {holder.pid}"):
            store.claim("job")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        store.claim("job")  # the kernel dropped the dead holder's lock: no stale claim
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_in_memory_claims_fence_runs_sharing_the_store():
    from agora.errors import CheckpointError
    from agora.stores import SyncInMemoryCheckpointStore

    store = SyncInMemoryCheckpointStore()
    store.claim("job")
    with pytest.raises(CheckpointError, match="another run in this process"):
        store.claim("job")
    store.release("job")
    store.claim("job")
    store.close()
