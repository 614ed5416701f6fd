"""Runs a documented script or an example in a child process, in its own folder, with a
timeout, and proves that nothing it started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["REPO", "Finished", "run_python"]

REPO = Path(__file__).resolve().parents[2]
#: Every process a run starts inherits this variable; whatever still carries the run's
#: token after it ended was left behind (pool workers reparented to init are no longer
#: our descendants, so the environment is how we find them).
TOKEN_VAR = "AGORA_DOCS_TEST_RUN"


@dataclass(frozen=True)
class Finished:
    """How a child run ended."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (f"$ {' '.join(self.args)}\n--- stdout ---\n{self.stdout}\n"
                f"--- stderr ---\n{self.stderr}")

    def check(self) -> Finished:
        """Raise AssertionError with the whole output unless the run exited 0."""
        if self.returncode != 0:
            raise AssertionError(f"exit code {self.returncode}\n{self.output}")
        return self


def run_python(args: Sequence[str], *, cwd: Path, timeout_s: float = 90.0,
               env: dict[str, str] | None = None) -> Finished:
    """``python *args`` in ``cwd`` (a new session), killed as a group after ``timeout_s``.

    Raises AssertionError if it timed out or if any process it started is still alive
    once it has exited (after a short grace for workers to notice their parent is gone).
    """
    token = uuid.uuid4().hex
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env[TOKEN_VAR] = token
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), child_env.get("PYTHONPATH", "")) if p)
    child_env.pop("CI", None)  # the CLI's progress line is off anyway: stdout is a pipe
    cmd = [sys.executable, *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        _kill_leftovers(token)
        raise AssertionError(
            f"timed out after {timeout_s}s: {' '.join(cmd)}\n{stdout[-3000:]}\n{stderr[-3000:]}"
        ) from None
    finished = Finished(tuple(cmd), proc.returncode, stdout, stderr)
    left = _wait_for_leftovers(token, grace_s=3.0)
    if left:
        raise AssertionError(f"processes left behind by {' '.join(cmd)}: {left}\n{finished.output}")
    return finished


def _carriers(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TOKEN_VAR) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _wait_for_leftovers(token: str, grace_s: float) -> str:
    deadline = time.monotonic() + grace_s
    while True:
        left = _carriers(token)
        if not left:
            return ""
        if time.monotonic() > deadline:
            desc = ", ".join(f"{p.pid}:{' '.join(p.cmdline())[:80]}" for p in left)
            _kill_leftovers(token)
            return desc
        time.sleep(0.05)


def _kill_leftovers(token: str) -> None:
    for proc in _carriers(token):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
