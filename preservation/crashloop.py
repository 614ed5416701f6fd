"""The crash-and-resume loop: prepare a driver work directory, run ``preservation.driver``
as a subprocess with a seeded crash point until it finishes, and find processes that
outlived a killed driver."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agora.testing import assert_no_processes_left
from preservation.driver import write_input
from preservation.faults import CRASH_ENV

__all__ = [
    "CrashLoop",
    "TAG_ENV",
    "assert_no_tagged_processes",
    "plan_crashes",
    "prepare",
    "tagged_processes",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Environment marker given to driver subprocesses; every process they start inherits it,
#: which is how a test finds workers re-parented after their driver was killed.
TAG_ENV = "AGORA_PRESERVATION_TAG"
DRIVER_TIMEOUT_S = 60

#: Crash points and the largest event count a seeded plan picks for each: small enough
#: that the point is reached early in a run of a few thousand records.
CRASH_RANGES = {
    "sink_write": 40,
    "sink_flush": 8,
    "dlq_write": 4,
    "dlq_flush": 8,
    "checkpoint_save": 8,
}


def prepare(workdir: Path, *, lane: str, n: int, batch_size: int, checkpoint_every: int,
            seed: int, poison_rate: float = 0.01, sink_delay_s: float = 0.0,
            sink: str = "jsonl") -> dict[str, Any]:
    """Write ``input.csv`` and ``spec.json``; return what ``spec.json`` holds. Poison ids
    (malformed lines, a middleware that raises, a sink that rejects) are drawn with ``seed``;
    ``sink_delay_s`` slows every sink call so that a signal from outside lands mid-run;
    ``sink`` picks the output format (``jsonl``, ``csv``, ``parquet``)."""
    rng = random.Random(seed)
    ids = list(range(n))
    k = max(3, int(n * poison_rate))
    malformed, mw_poison, sink_poison = (set(rng.sample(ids, k)) for _ in range(3))
    mw_poison -= malformed
    sink_poison -= malformed | mw_poison
    if lane not in ("rows", "batches"):
        mw_poison = set()  # the Arrow lanes carry no per-record middleware
    write_input(workdir / "input.csv", n, malformed)
    spec = {
        "lane": lane, "n": n, "batch_size": batch_size, "checkpoint_every": checkpoint_every,
        "malformed": sorted(malformed), "middleware_poison": sorted(mw_poison),
        "sink_poison": sorted(sink_poison), "sink_delay_s": sink_delay_s, "sink": sink,
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    return spec


def plan_crashes(seed: int, rounds: int) -> list[str]:
    """``rounds`` crash points, ``"<point>:<count>"``, drawn with ``seed``."""
    rng = random.Random(seed * 7919 + 1)
    plan = []
    for _ in range(rounds):
        point = rng.choice(sorted(CRASH_RANGES))
        plan.append(f"{point}:{rng.randint(1, CRASH_RANGES[point])}")
    return plan


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) whose environment carries ``TAG_ENV=tag``."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TAG_ENV) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_no_tagged_processes(tag: str, grace_s: float = 5.0) -> None:
    """Fail (after killing them) if processes started under ``tag`` are alive ``grace_s``
    seconds later — e.g. workers of a driver that was SIGKILLed."""
    assert_no_processes_left(lambda: tagged_processes(tag), grace_s=grace_s,
                             what="processes outlived their killed driver")


@dataclass
class CrashLoop:
    """Runs the driver over ``workdir`` once per planned crash point, then once without,
    stopping early when a run finishes. Records what happened to each run."""

    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    crashes: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)

    def run_driver(self, crash: str | None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._argv(), cwd=REPO_ROOT, env=self._env(crash), capture_output=True, text=True,
            timeout=DRIVER_TIMEOUT_S,
        )
        return self._record(crash, proc)

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "preservation.driver", str(self.workdir)]

    def _env(self, crash: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)
        if crash is not None:
            env[CRASH_ENV] = crash
        env[TAG_ENV] = self.tag
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def _record(self, crash: str | None,
                proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        killed = proc.returncode == -signal.SIGKILL
        self.crashes += killed
        self.runs.append({"crash": crash, "rc": proc.returncode, "stdout": proc.stdout,
                          "stderr": proc.stderr[-2000:]})
        if not killed and proc.returncode not in (0, 130):
            raise AssertionError(
                f"driver failed (crash point {crash}, rc {proc.returncode}):\n{proc.stderr}")
        return proc

    def run_signalled(self, sig: int, after_s: float) -> subprocess.CompletedProcess[str]:
        """Run the driver and send it ``sig`` from outside ``after_s`` seconds after its
        sink file shows output — at whatever instruction it happens to be executing (a
        write, an fsync, an SQLite commit…). The run may also finish first."""
        out = self.workdir / "out.jsonl"
        size0 = out.stat().st_size if out.exists() else 0
        label = f"{signal.Signals(sig).name}@{after_s:.3f}s"
        with subprocess.Popen(self._argv(), cwd=REPO_ROOT, env=self._env(None),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as popen:
            deadline = time.monotonic() + DRIVER_TIMEOUT_S
            while popen.poll() is None and time.monotonic() < deadline:
                if out.exists() and out.stat().st_size > size0:
                    break
                time.sleep(0.005)
            time.sleep(after_s)
            if popen.poll() is None:
                popen.send_signal(sig)
            try:
                stdout, stderr = popen.communicate(timeout=DRIVER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                stdout, stderr = popen.communicate()
                raise AssertionError(f"driver did not stop after {label}:\n{stderr}") from None
        proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
        return self._record(label, proc)

    def run(self, plan: list[str]) -> dict[str, Any]:
        """Run through ``plan``, then to completion; return the final run's summary."""
        for crash in [*plan, None]:
            proc = self.run_driver(crash)
            if proc.returncode == 0:
                return json.loads(proc.stdout.strip().splitlines()[-1])
        raise AssertionError("unreachable: the last run has no crash point")

    def run_killed_from_outside(self, seed: int, rounds: int,
                                check_processes: bool = False) -> dict[str, Any]:
        """SIGKILL up to ``rounds`` runs at moments drawn from ``seed`` (0-0.3 s in), then
        run to completion; return the final run's summary. With ``check_processes``, each
        killed run is checked to have left none of its processes behind."""
        rng = random.Random(seed)
        for _ in range(rounds):
            proc = self.run_signalled(signal.SIGKILL, rng.uniform(0.0, 0.3))
            if check_processes:
                assert_no_tagged_processes(self.tag)
            if proc.returncode == 0:
                return json.loads(proc.stdout.strip().splitlines()[-1])
        return json.loads(self.run_driver(None).stdout.strip().splitlines()[-1])

    def history(self) -> str:
        return "; ".join(f"{r['crash']} -> rc {r['rc']}" for r in self.runs)
