"""Worker start-up failures, each in a real script run in its own interpreter: one
``WorkerStartupError`` that says what went wrong and what to do, the worker's own error
in it, no interleaved worker tracebacks, no worker left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from agora.process.startup import (
    capture_excepthook,
    explain_load_error,
    last_line,
    report_path,
    take_report,
)

pytestmark = pytest.mark.timeout(120)

GUARD = 'if __name__ == "__main__":'

DRIVER = """
import asyncio
from agora.middleware.base import MiddlewareContext
from agora.process import ProcessBatchMiddleware

async def drive(fn):
    mw = ProcessBatchMiddleware(fn, max_workers=2, name="enrich")
    ctx = MiddlewareContext("p", "r", mw.name, 0)
    await mw.on_start(ctx)
    try:
        print("result", await mw.submit(0, [{"a": 1}]))
    finally:
        await mw.on_stop(ctx)
"""


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    left: list[str]  # processes that outlived the job
    slots_left: list[str]  # files left in the job's shared-memory directory


def run_job(tmp_path: Path, files: dict[str, str], command: list[str]) -> Outcome:
    """Write ``files`` into ``tmp_path`` and run ``command`` there under the reaper."""
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "agora_driver.py").write_text(DRIVER)
    report = tmp_path / "reaper.json"
    shm = tmp_path / "shm"
    shm.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), str(tmp_path)]),
        "AGORA_SHM_DIR": str(shm),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.process.reaper", str(report), "--", *command],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=110,
    )
    data = json.loads(report.read_text())
    return Outcome(
        data["returncode"], done.stdout, done.stderr, data["left"], sorted(os.listdir(shm))
    )


def assert_one_clear_failure(outcome: Outcome, *needles: str) -> str:
    """The job failed with one WorkerStartupError naming the middleware and all
    ``needles``; workers printed nothing of their own; nothing was left running."""
    assert outcome.returncode == 1, outcome.stderr
    final = last_line(outcome.stderr)
    assert final.startswith("agora.errors.WorkerStartupError: process middleware 'enrich'"), final
    for needle in needles:
        assert needle in final, (needle, final)
    # The driver's traceback, plus at most the one worker traceback chained as its cause:
    # never one per worker, never multiprocessing's "Process agora-…" banner.
    assert outcome.stderr.count("Traceback (most recent call last)") <= 2, outcome.stderr
    assert "Process agora-" not in outcome.stderr
    assert outcome.left == [] and outcome.slots_left == []
    return final


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path):
    script = """
        from agora_driver import asyncio, drive

        def double(rows):
            return rows

        asyncio.run(drive(double))   # no __main__ guard: every worker re-runs this
    """
    outcome = run_job(tmp_path, {"job.py": script}, [sys.executable, "job.py"])
    final = assert_one_clear_failure(
        outcome, "while re-importing the script", "job.py", f"has no `{GUARD}` guard",
        "define fn at the top level of an importable module",
    )
    assert "its error:" in final  # the worker's own last line is in the message
    assert "bootstrapping phase" not in outcome.stderr  # multiprocessing's own wall of text


def test_a_guarded_script_whose_import_fails_in_the_worker_gets_the_workers_error(tmp_path):
    script = f"""
        import os
        from agora_driver import asyncio, drive

        def double(rows):
            return rows

        if os.environ.get("AGORA_TEST_IN_DRIVER") != "1":
            raise RuntimeError("settings are only loaded in the driver")

        {GUARD}
            os.environ["AGORA_TEST_IN_DRIVER"] = "0"  # the workers inherit this
            asyncio.run(drive(double))
    """
    env_cmd = ["env", "AGORA_TEST_IN_DRIVER=1", sys.executable, "job.py"]
    outcome = run_job(tmp_path, {"job.py": script}, env_cmd)
    final = assert_one_clear_failure(
        outcome, "while re-importing the script", "RuntimeError: settings are only loaded"
    )
    assert "which has no" not in final  # it has the guard; the message does not claim otherwise


def test_fn_defined_in_an_interactive_session_is_explained(tmp_path):
    code = textwrap.dedent(
        """
        from agora_driver import asyncio, drive
        def double(rows):
            return rows
        asyncio.run(drive(double))
        """
    )
    outcome = run_job(tmp_path, {}, [sys.executable, "-c", code])
    assert_one_clear_failure(
        outcome, "__main__.double is defined in an interactive session",
        "move fn into a module file",
    )


def test_fn_whose_module_is_not_on_the_workers_path_is_explained(tmp_path):
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "secret_steps.py").write_text("def double(rows):\n    return rows\n")
    script = f"""
        import importlib.util, sys
        from agora_driver import asyncio, drive

        {GUARD}
            spec = importlib.util.spec_from_file_location("secret_steps", "hidden/secret_steps.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules["secret_steps"] = module   # importable here, not in a worker
            spec.loader.exec_module(module)
            asyncio.run(drive(module.double))
    """
    outcome = run_job(tmp_path, {"job.py": script}, [sys.executable, "job.py"])
    assert_one_clear_failure(
        outcome, "secret_steps.double cannot be imported in a worker",
        "No module named 'secret_steps'", "PYTHONPATH",
    )


def test_fn_defined_under_the_main_guard_is_explained(tmp_path):
    script = f"""
        from agora_driver import asyncio, drive

        {GUARD}
            def double(rows):
                return rows
            asyncio.run(drive(double))
    """
    outcome = run_job(tmp_path, {"job.py": script}, [sys.executable, "job.py"])
    assert_one_clear_failure(
        outcome, "__main__.double is not a top-level name of the script",
        f"not inside the `{GUARD}` block",
    )


def test_an_fn_module_that_raises_when_imported_fresh_is_explained(tmp_path):
    module = """
        import builtins
        if not getattr(builtins, "_settings_loaded", False):
            raise RuntimeError("load the settings before importing steps")

        def double(rows):
            return rows
    """
    script = f"""
        import builtins
        from agora_driver import asyncio, drive

        {GUARD}
            builtins._settings_loaded = True
            import steps
            asyncio.run(drive(steps.double))
    """
    outcome = run_job(tmp_path, {"steps.py": module, "job.py": script}, [sys.executable, "job.py"])
    assert_one_clear_failure(
        outcome, "importing fn's module 'steps' in a fresh worker process failed",
        "RuntimeError: load the settings before importing steps",
        "must import cleanly in a new interpreter",
    )
    # The forkserver, which preloads fn's module, died of it too: silently (its
    # traceback went to a report the pool read), then the pool retried without it.
    assert "forkserver.py" not in outcome.stderr


def test_a_healthy_guarded_script_runs_and_leaves_nothing(tmp_path):
    script = f"""
        from agora_driver import asyncio, drive

        def double(rows):
            return [dict(r, a=r["a"] * 2) for r in rows]

        {GUARD}
            asyncio.run(drive(double))
    """
    outcome = run_job(tmp_path, {"job.py": script}, [sys.executable, "job.py"])
    assert outcome.returncode == 0, outcome.stderr
    assert "result [{'a': 2}]" in outcome.stdout
    assert outcome.stderr == "" and outcome.left == [] and outcome.slots_left == []


# ------------------------------------------------------------------ the pieces, in process


def test_the_excepthook_reports_agora_workers_and_passes_others_through(monkeypatch):
    import multiprocessing

    seen: list[str] = []
    hook = capture_excepthook(lambda t, e, tb: seen.append(str(e)))
    try:
        raise ValueError("not ours")
    except ValueError as exc:
        hook(ValueError, exc, exc.__traceback__)
    assert seen == ["not ours"]
    assert take_report(os.getpid()) == ""

    monkeypatch.setattr(multiprocessing.current_process(), "name", "agora-enrich-g1-w0")
    try:
        raise ValueError("ours")
    except ValueError as exc:
        hook(ValueError, exc, exc.__traceback__)
    assert seen == ["not ours"]
    text = take_report(os.getpid())
    assert last_line(text) == "ValueError: ours"
    assert not os.path.exists(report_path(os.getpid()))  # taken means removed


def test_an_unexplained_load_error_still_names_the_module_and_the_fix():
    message = explain_load_error("fn", "pkg.steps", "ValueError: bad config")
    assert "'pkg.steps'" in message and "ValueError: bad config" in message
    assert "import cleanly in a new interpreter" in message


def test_a_report_planted_by_another_user_is_neither_trusted_nor_removed():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user")
    pid = 2**22 + 17  # above any pid this machine hands out by default
    path = report_path(pid)
    with open(path, "w") as planted:
        planted.write("Traceback...\nEvilError: trust me\n")
    try:
        os.chown(path, 65534, 65534)
        assert take_report(pid) == ""
        assert os.path.exists(path)
    finally:
        os.unlink(path)


def test_a_report_is_never_written_through_a_planted_symlink(tmp_path, monkeypatch):
    import multiprocessing

    pid = 2**22 + 18
    target = tmp_path / "victim"
    target.write_text("precious")
    os.symlink(target, report_path(pid))
    try:
        seen: list[str] = []
        hook = capture_excepthook(lambda t, e, tb: seen.append(str(e)))
        monkeypatch.setattr(multiprocessing.current_process(), "name", "agora-enrich-g1-w0")
        monkeypatch.setattr(os, "getpid", lambda: pid)
        try:
            raise ValueError("boom")
        except ValueError as exc:
            hook(ValueError, exc, exc.__traceback__)
        monkeypatch.undo()
        assert target.read_text() == "precious"
        assert seen == ["boom"]  # it could not write the report: printed as usual instead
    finally:
        os.unlink(report_path(pid))
