"""Sweeping files named after processes: only those of processes that are gone go."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agora._safe_files import process_alive, sweep_files_of_dead_processes
from agora.process import shm, startup


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert proc.wait(timeout=30) == 0
    return proc.pid


def test_process_alive_tells_a_live_process_from_a_reaped_one(no_orphans: None) -> None:
    assert process_alive(os.getpid())
    assert not process_alive(dead_pid())


def test_sweep_removes_only_files_of_dead_processes(tmp_path: Path, no_orphans: None) -> None:
    gone = dead_pid()
    (tmp_path / f"job-{gone}").write_text("stale")
    (tmp_path / f"job-{os.getpid()}").write_text("ours, running")
    (tmp_path / "notes.txt").write_text("not one of these files")

    def creator(name: str) -> int | None:
        return int(name[4:]) if name.startswith("job-") else None

    assert sweep_files_of_dead_processes(str(tmp_path), creator) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"job-{os.getpid()}", "notes.txt"]


def test_sweep_skips_a_file_it_cannot_remove(tmp_path: Path, no_orphans: None) -> None:
    # A directory under a dead pid's name: unlink fails, the sweep goes on and counts it not.
    (tmp_path / f"job-{dead_pid()}").mkdir()
    assert sweep_files_of_dead_processes(str(tmp_path), lambda name: int(name[4:])) == 0
    assert len(list(tmp_path.iterdir())) == 1


def test_startup_reports_of_dead_processes_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_orphans: None
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone, alive = dead_pid(), os.getpid()
    startup.write_report(gone, "Traceback: stale")
    startup.write_report(alive, "Traceback: still ours")
    (tmp_path / "agora-startup-notapid.txt").write_text("left alone")
    assert startup.sweep_stale_reports() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"agora-startup-{alive}.txt", "agora-startup-notapid.txt"]
    assert (os.stat(startup.report_path(alive)).st_mode & 0o777) == 0o600


def test_shm_slots_of_dead_processes_are_swept(tmp_path: Path, no_orphans: None) -> None:
    gone, alive = dead_pid(), os.getpid()
    for pid in (gone, alive):
        (tmp_path / f"{shm.SLOT_PREFIX}{pid}-0a1b").write_bytes(b"slot")
    (tmp_path / f"{shm.SLOT_PREFIX}{gone}-not-hex").write_bytes(b"not a slot name")
    assert shm.sweep_stale_slots(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{shm.SLOT_PREFIX}{alive}-0a1b", f"{shm.SLOT_PREFIX}{gone}-not-hex"])
