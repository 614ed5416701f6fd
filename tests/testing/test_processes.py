"""The no-orphan and no-leak checks of agora.testing really detect what they look for."""

from __future__ import annotations

import os
import subprocess

import psutil
import pytest

from agora.process import shm
from agora.testing import (
    assert_no_processes_left,
    assert_no_shm_slots,
    assert_no_worker_processes,
    leftover_shm_slots,
    shm_slot_dir,
    wait_until,
    worker_processes,
)


@pytest.mark.timeout(30)
def test_a_left_behind_child_is_detected_named_and_killed(no_orphans):
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert child.pid in [p.pid for p in worker_processes()]
        with pytest.raises(AssertionError,
                           match=rf"worker processes left behind: {child.pid}:sleep 60"):
            assert_no_worker_processes(grace_s=0.2)
        assert child.wait(timeout=5) == -9  # killed by the check, not by this test
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.timeout(30)
def test_a_grandchild_counts_as_left_behind(no_orphans, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    parent = subprocess.Popen(
        ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"],
    )
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "",
                   timeout_s=10, what="the shell to write its child's pid")
        grandchild = int(pid_file.read_text())
        found = {p.pid for p in worker_processes()}
        assert {parent.pid, grandchild} <= found
        with pytest.raises(AssertionError, match=str(grandchild)):
            assert_no_worker_processes(grace_s=0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait()


def test_a_child_that_exits_within_the_grace_passes(no_orphans):
    child = subprocess.Popen(["true"])
    assert_no_worker_processes(grace_s=5)  # waits for it to end instead of failing
    child.wait()


def test_a_custom_finder_is_polled_until_empty_and_named_in_the_failure():
    calls = []

    def shrinking() -> list[psutil.Process]:
        calls.append(1)
        return [psutil.Process(os.getpid())] if len(calls) < 3 else []

    assert_no_processes_left(shrinking, grace_s=5)
    assert len(calls) == 3


def test_a_custom_finder_that_never_empties_fails_with_its_description():
    # A finder returning a process that is already gone: the check still reports it,
    # and killing the gone process is not an error.
    gone = subprocess.Popen(["sleep", "60"])
    proc = psutil.Process(gone.pid)
    gone.kill()
    gone.wait()
    with pytest.raises(AssertionError, match=rf"drivers' workers survived: {gone.pid}"):
        assert_no_processes_left(lambda: [proc], grace_s=0.1, what="drivers' workers survived")


def _touch(directory, name: str) -> str:
    path = os.path.join(directory, name)
    open(path, "w").close()
    return path


def test_slot_files_are_found_by_their_creator_pid(tmp_path):
    mine = _touch(tmp_path, f"agora-slot-{os.getpid()}-00ff")
    theirs = _touch(tmp_path, "agora-slot-1-abcd")
    _touch(tmp_path, "agora-slot-not-a-slot")
    _touch(tmp_path, "unrelated")
    assert sorted(leftover_shm_slots(directory=str(tmp_path))) == sorted([mine, theirs])
    assert leftover_shm_slots(os.getpid(), str(tmp_path)) == [mine]
    assert leftover_shm_slots(directory=str(tmp_path / "missing")) == []


def test_a_left_slot_fails_the_check_and_is_unlinked(tmp_path):
    mine = _touch(tmp_path, f"agora-slot-{os.getpid()}-1a2b")
    other = _touch(tmp_path, "agora-slot-1-abcd")
    with pytest.raises(AssertionError, match=rf"slots left behind by process {os.getpid()}.*1a2b"):
        assert_no_shm_slots(directory=str(tmp_path))
    assert not os.path.exists(mine)
    assert os.path.exists(other)  # another process's slot is none of this check's business
    assert_no_shm_slots(directory=str(tmp_path))  # clean now


def test_the_slot_directory_follows_agora_shm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AGORA_SHM_DIR", str(tmp_path))
    assert shm_slot_dir() == str(tmp_path)
    _touch(tmp_path, f"agora-slot-{os.getpid()}-beef")
    with pytest.raises(AssertionError, match="beef"):
        assert_no_shm_slots()


def test_slot_naming_matches_the_process_transport(tmp_path, monkeypatch):
    """The check reads the transport's naming and directory from the outside; this keeps
    the two from drifting apart."""
    monkeypatch.setenv(shm.SHM_DIR_ENV, str(tmp_path))
    assert shm_slot_dir() == shm.shm_dir()
    monkeypatch.delenv(shm.SHM_DIR_ENV)
    assert shm_slot_dir() == shm.shm_dir() == shm.DEFAULT_SHM_DIR
    name = f"{shm.SLOT_PREFIX}{os.getpid()}-0123abcd"
    path = _touch(tmp_path, name)
    assert leftover_shm_slots(os.getpid(), str(tmp_path)) == [path]
    assert shm.leftover_slot_paths(os.getpid(), str(tmp_path)) == [path]
