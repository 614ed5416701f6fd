"""Interruption with real signals: one SIGINT/SIGTERM stops a run promptly, in-process and
on the process lane, through ``agora run`` and through ``run_sync()`` in a script; the
summary and exit code say so; the checkpoint covers exactly the records written; a
resumed run completes the job; no worker outlives the run. Also cancellation of run()
with synchronous middleware, and a signal after the end of the source."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agora import DeliveryConfig, SyncInMemoryCheckpointStore, MapMiddleware, MemorySink, Pipeline
from tests.runtime.doubles import FlakySink, RecordingSource

ROOT = Path(__file__).resolve().parents[2]
AGORA = [sys.executable, "-m", "agora"]
#: Generous bound for a child to come up and reach its marker on a loaded machine; the
#: tests wait on a marker file, not on this.
START_TIMEOUT_S = 60


def _env(job_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, JOB_DIR=str(job_dir), PYTHONPATH=str(ROOT), CI="1")
    env.update(extra)
    return env


def _start(cmd: list[str], job_dir: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(job_dir, **extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"job ended before {path.name} appeared: {out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.01)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the job did not stop after the signal:\n{err}") from None
    return proc.returncode, out, err


def _ids(job_dir: Path) -> list[int]:
    return [json.loads(line)["id"] for line in (job_dir / "out.jsonl").read_text().splitlines()]


def _assert_workers_gone(job_dir: Path) -> None:
    pids = [int(p.name) for p in (job_dir / "workers").iterdir()]
    assert pids, "the job never ran a worker"
    deadline = time.monotonic() + 5
    while True:
        alive = [pid for pid in pids if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not alive, f"worker processes left behind: {alive}"


def _resume_completes_the_job(job_dir: Path, target: str, rows: int) -> None:
    done = subprocess.run([*AGORA, "run", target, "--json"], cwd=ROOT,
                          env=_env(job_dir, ROWS=str(rows)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "completed"
    # at least once, nothing lost; and the interrupted run's checkpoint covered every
    # record it wrote, so nothing is written twice either
    assert sorted(_ids(job_dir)) == list(range(rows))


@pytest.mark.timeout(120)
def test_one_sigint_stops_a_synchronous_in_process_run_at_once(tmp_path):
    rows = 3000  # 2 ms each: about six seconds if the signal were ignored
    proc = _start([*AGORA, "run", "tests.runtime.interrupt_jobs:in_process", "--json"], tmp_path,
                  ROWS=str(rows))
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    assert code == 130, err
    doc = json.loads(out)  # one document on stdout
    assert doc["error"]["exit_code"] == 130 and doc["error"]["type"] == "KeyboardInterrupt"
    summary = doc["summary"]
    assert summary["outcome"] == "interrupted"
    assert summary["runtime"]["interruption"] == {"reason": "SIGINT", "forced": False}
    assert summary["records_consumed"] < rows
    written = _ids(tmp_path)
    assert written == list(range(len(written))) and summary["records_written"] == len(written)
    assert summary["last_checkpoint"] == len(written)  # the handled prefix, all of it
    assert "Traceback" not in err and "interrupted by SIGINT" in err
    _resume_completes_the_job(tmp_path, "tests.runtime.interrupt_jobs:in_process", rows)


@pytest.mark.timeout(120)
def test_one_sigterm_stops_a_process_lane_run_and_terminates_its_workers(tmp_path):
    rows = 4000  # 200 batches of 50 ms over two workers: about five seconds uninterrupted
    proc = _start([*AGORA, "run", "tests.runtime.interrupt_jobs:process_lane", "--json"], tmp_path,
                  ROWS=str(rows), MARK_AFTER="400")
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGTERM)
    code, out, err = _finish(proc)
    assert code == 130, err
    summary = json.loads(out)["summary"]
    assert summary["outcome"] == "interrupted"
    assert summary["runtime"]["interruption"]["reason"] == "SIGTERM"
    assert summary["records_consumed"] < rows
    assert (summary["records_written"] + summary["records_abandoned"]
            == summary["records_consumed"])
    written = _ids(tmp_path)
    assert len(written) == summary["records_written"]
    _assert_workers_gone(tmp_path)
    _resume_completes_the_job(tmp_path, "tests.runtime.interrupt_jobs:process_lane", rows)


@pytest.mark.timeout(120)
def test_a_second_sigint_abandons_in_flight_batches_at_once(tmp_path):
    # Each batch takes 30 s in a worker: the first SIGINT would wait the drain time for
    # the batches in flight; the second abandons them, and the workers are still killed.
    proc = _start([*AGORA, "run", "tests.runtime.interrupt_jobs:process_lane", "--json"], tmp_path,
                  ROWS="200", MARK_AFTER="0", BATCH_SLEEP_S="30")
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the run acknowledges the first signal
    assert "no more records are read" in line, line
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc, timeout=20)
    assert code == 130, err
    summary = json.loads(out)["summary"]
    assert summary["runtime"]["interruption"] == {"reason": "SIGINT", "forced": True}
    assert summary["records_written"] == 0 and summary["last_checkpoint"] is None
    assert summary["records_abandoned"] == summary["records_consumed"] > 0
    _assert_workers_gone(tmp_path)


@pytest.mark.timeout(120)
def test_run_sync_in_a_script_reraises_keyboard_interrupt_after_a_clean_shutdown(tmp_path):
    script = "import sys; from tests.runtime.interrupt_jobs import main; sys.exit(main('in_process'))"
    proc = _start([sys.executable, "-c", script], tmp_path)
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    assert code == 130, err
    doc = json.loads(out)
    assert doc["caught"] == "KeyboardInterrupt"
    summary = doc["summary"]
    assert summary["outcome"] == "interrupted"
    # sinks were flushed and closed: every line on disk is complete and counted
    assert len(_ids(tmp_path)) == summary["records_written"] == summary["last_checkpoint"]


def test_cancelling_run_with_synchronous_middleware_stops_promptly_and_keeps_the_prefix():
    total = 100_000
    store = SyncInMemoryCheckpointStore()
    sink = MemorySink()

    def slow(r):
        time.sleep(0.0005)
        return r

    bound = Pipeline(RecordingSource([{"id": i} for i in range(total)]), id="c").pipe(
        MapMiddleware(slow)).build(sink, delivery=DeliveryConfig(checkpoint=store,
                                                                 checkpoint_every=10_000))

    async def main():
        task = asyncio.create_task(bound.run())
        await asyncio.sleep(0.3)  # the pump never awaits anything that suspends
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    summary = bound.last_summary
    assert summary is not None and summary.outcome == "interrupted"
    assert summary.runtime["interruption"] == {"reason": "cancelled", "forced": True}
    assert 0 < summary.records_written < total
    assert store.load("c").value == len(sink.records) == summary.records_written


def test_a_signal_after_the_end_of_the_source_does_not_make_a_finished_run_interrupted():
    log: list[str] = []

    class SignalOnClose(FlakySink):
        async def close(self) -> None:
            signal.raise_signal(signal.SIGINT)  # handled by the run: shutdown goes on
            await super().close()

    sink = SignalOnClose(log=log)
    summary = Pipeline(RecordingSource([{"id": i} for i in range(10)])).build(sink).run_sync()
    assert summary.outcome == "completed" and summary.records_written == 10
    assert "flaky.close" in log
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_program_s_own_signal_handler_is_left_alone():
    seen: list[int] = []

    def mine(signum, frame):
        seen.append(signum)

    class SignalOnWrite(FlakySink):
        async def write(self, record):
            if record["id"] == 3:
                signal.raise_signal(signal.SIGINT)
            await super().write(record)

    previous = signal.signal(signal.SIGINT, mine)
    try:
        summary = Pipeline(RecordingSource([{"id": i} for i in range(10)])).build(
            SignalOnWrite(mode="raise")).run_sync()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT] and summary.outcome == "completed"


def test_a_signal_as_the_source_ends_does_not_make_a_finished_run_interrupted():
    class SignalAtTheEnd(RecordingSource):
        async def _gen(self):
            async for unit in super()._gen():
                yield unit
            signal.raise_signal(signal.SIGINT)  # lands while the source says "no more"

    sink = MemorySink()
    summary = Pipeline(SignalAtTheEnd([{"id": i} for i in range(10)])).build(sink).run_sync()
    assert summary.outcome == "completed" and summary.runtime["interruption"] is None
    assert len(sink.records) == 10
