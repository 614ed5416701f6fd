"""The agora command as scripts use it: one JSON document on stdout for every command,
failures included; one line and exit 2 for user errors; exit 1 and one line for a failed
run; quiet broken pipes; help text for every option."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agora.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

JOB = textwrap.dedent('''
    import os
    from agora import (DeliveryConfig, IterableSource, JsonLinesSink, MapMiddleware, Pipeline,
                       SQLiteCheckpointStore, SQLiteDLQSink)

    def check(r):
        if r["id"] == 3:
            raise ValueError("id 3 is poison")
        return r

    def _delivery(dlq=True):
        d = os.environ["JOB_DIR"]
        return DeliveryConfig(checkpoint=SQLiteCheckpointStore(d + "/ckpt.db"),
                              dlq=SQLiteDLQSink(d + "/dlq.db") if dlq else None)

    def pipeline():
        return (Pipeline(IterableSource([{"id": i} for i in range(10)], name="ids"), id="job")
                .pipe(MapMiddleware(check, name="check"))
                .build(JsonLinesSink(os.environ["JOB_DIR"] + "/out.jsonl"), delivery=_delivery()))

    def failing():
        return (Pipeline(IterableSource([{"id": i} for i in range(10)], name="ids"), id="failing")
                .pipe(MapMiddleware(check, name="check"))
                .build(JsonLinesSink(os.environ["JOB_DIR"] + "/failing.jsonl"),
                       delivery=_delivery(dlq=False)))

    def needs_args(path, rows):
        return pipeline()

    def returns_number():
        return 42

    def raises():
        raise FileNotFoundError("config.yaml")

    def invalid_plan():
        from agora import ArrowMapMiddleware, MemorySink
        return Pipeline(IterableSource([1, 2])).pipe(ArrowMapMiddleware(lambda b: b)).build(MemorySink())
''')


@pytest.fixture
def job(tmp_path, monkeypatch):
    (tmp_path / "script_job_mod.py").write_text(JOB)
    (tmp_path / "script_broken_mod.py").write_text("raise RuntimeError('half-written module')\n")
    (tmp_path / "orders.csv").write_text("id,qty\n1,2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("JOB_DIR", str(tmp_path))
    yield tmp_path
    for name in ("script_job_mod", "script_broken_mod"):
        sys.modules.pop(name, None)


def _one_document(out: str) -> dict:
    return json.loads(out)  # raises unless stdout is exactly one JSON document


def test_a_failed_run_with_json_prints_one_error_document_with_the_partial_summary(job, capsys):
    assert main(["run", "script_job_mod:failing", "--json"]) == 1
    captured = capsys.readouterr()
    doc = _one_document(captured.out)
    assert doc["error"] == {"type": "ValueError", "message": doc["error"]["message"], "exit_code": 1}
    assert "ValueError: id 3 is poison" in doc["error"]["message"]
    summary = doc["summary"]
    assert summary["outcome"] == "failed" and summary["records_errored"] == 1
    assert summary["records_written"] == 3 and summary["error"]["type"] == "ValueError"
    [line] = captured.err.strip().splitlines()  # one clear line, no traceback
    assert line.startswith("agora: run failed: ValueError: id 3 is poison")


def test_a_failed_run_without_json_prints_the_partial_summary_and_one_line(job, capsys):
    assert main(["run", "script_job_mod:failing"]) == 1
    captured = capsys.readouterr()
    assert "of pipeline failing: failed" in captured.out
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_traceback_only_on_request(job, capsys):
    assert main(["run", "script_job_mod:failing", "--traceback"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "id 3 is poison" in err
    assert main(["run", "script_job_mod:raises", "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["run", "script_job_mod:needs_args"], "is a function that needs arguments"),
    (["run", "script_job_mod:returns_number"], "returned a int, not a BoundPipeline"),
    (["run", "script_job_mod:raises"], "calling factory script_job_mod:raises failed: FileNotFoundError"),
    (["run", "script_broken_mod:pipeline"], "importing module 'script_broken_mod' failed: RuntimeError"),
    (["run", "agora:Pipeline"], "is a class that needs arguments"),
    (["run", "script_job_mod:invalid_plan"], "invalid pipeline"),
    (["explain", "script_job_mod:invalid_plan"], "invalid pipeline"),
    (["run", "script_job_mod:nothing_here"], "has no attribute 'nothing_here'"),
    (["run", "nocolon"], "must be MODULE:OBJECT"),
    (["run", "--max-records", "x", "script_job_mod:pipeline"], "expected a whole number"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_are_one_line_exit_2_and_a_json_error_document(job, capsys, argv, fragment):
    assert main(argv) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("agora: ") and fragment in line, line
    assert captured.out == ""
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    doc = _one_document(captured.out)
    assert doc["error"]["exit_code"] == 2 and fragment in doc["error"]["message"]
    assert doc["summary"] is None


def _run_job(job, capsys) -> None:
    assert main(["run", "script_job_mod:pipeline"]) == 0
    capsys.readouterr()


def test_checkpoint_show_json_and_unknown_keys(job, capsys):
    _run_job(job, capsys)
    store = str(job / "ckpt.db")
    assert main(["checkpoint", "show", store, "--key", "job", "--json"]) == 0
    assert _one_document(capsys.readouterr().out)["job"]["value"] is not None
    assert main(["checkpoint", "show", store, "--key", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint key 'nope'" in err and "keys: 'job'" in err
    assert main(["checkpoint", "show", store, "--key", "nope", "--json"]) == 2
    doc = _one_document(capsys.readouterr().out)
    assert "keys: 'job'" in doc["error"]["message"]
    assert main(["checkpoint", "reset", store, "--key", "nope"]) == 2
    assert "keys: 'job'" in capsys.readouterr().err
    assert main(["checkpoint", "reset", store]) == 2  # which key?
    assert "needs --key" in capsys.readouterr().err


def test_dlq_list_unknown_stage_is_an_error_listing_the_stages(job, capsys):
    _run_job(job, capsys)
    assert main(["dlq", "list", str(job / "dlq.db"), "--stage", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "no record has stage 'bogus'" in err and "sink_write" in err and "middleware" in err
    assert main(["dlq", "list", str(job / "dlq.db"), "--stage", "sink_write", "--json"]) == 0
    assert _one_document(capsys.readouterr().out)["count"] == 0


@pytest.mark.parametrize("argv, fragment", [
    (["checkpoint", "show", "{d}/orders.csv"], "is not an Agora checkpoint store"),
    (["checkpoint", "show", "{d}/dlq.db"], "is not an Agora checkpoint store"),
    (["dlq", "list", "{d}/orders.csv"], "is not an Agora DLQ"),
    (["dlq", "list", "{d}/ckpt.db"], "is not an Agora DLQ"),
    (["dlq", "list", "{d}/missing.db"], "no DLQ at"),
    (["checkpoint", "show", "{d}/missing.db"], "no checkpoint store at"),
])
def test_pointing_the_tools_at_a_file_that_is_not_a_store_is_one_line(job, capsys, argv, fragment):
    _run_job(job, capsys)
    argv = [a.format(d=job) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert fragment in line and "Traceback" not in captured.err
    before = (job / "orders.csv").read_text()
    assert main([*argv, "--json"]) == 2
    assert fragment in _one_document(capsys.readouterr().out)["error"]["message"]
    assert (job / "orders.csv").read_text() == before  # looked at, never touched


def test_explain_and_run_json_are_one_document(job, capsys):
    assert main(["explain", "script_job_mod:pipeline", "--json"]) == 0
    assert _one_document(capsys.readouterr().out)["pipeline_id"] == "job"
    assert main(["run", "script_job_mod:pipeline", "--json"]) == 0
    captured = capsys.readouterr()
    assert _one_document(captured.out)["outcome"] == "completed"


def test_a_broken_pipe_ends_quietly_with_141(job, capsys, monkeypatch):
    _run_job(job, capsys)

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["dlq", "list", str(job / "dlq.db")]) == 141
    assert "Traceback" not in capsys.readouterr().err


def _subprocess_env(job: Path) -> dict[str, str]:
    return dict(os.environ, JOB_DIR=str(job), PYTHONPATH=f"{job}{os.pathsep}{ROOT}", CI="1")


@pytest.mark.timeout(120)
def test_dlq_list_piped_into_head_has_no_traceback(job):
    many = "\n".join(json.dumps({
        "pipeline_id": "p", "run_id": "r", "stage": "middleware", "error_type": "ValueError",
        "error_message": f"bad {i}", "source": "s", "checkpoint": i, "record": {"id": i},
        "created_at": "2026-12-05T00:00:00+00:00"}) for i in range(20_000))
    (job / "big.jsonl").write_text(many + "\n")
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m agora dlq list {job}/big.jsonl | head -1"],
        cwd=job, env=_subprocess_env(job), capture_output=True, text=True, timeout=60)
    assert result.stdout.count("\n") == 1 and "bad 0" in result.stdout
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == 141


@pytest.mark.timeout(120)
def test_a_failed_run_json_through_a_real_process(job):
    result = subprocess.run([sys.executable, "-m", "agora", "run", "script_job_mod:failing", "--json"],
                            cwd=job, env=_subprocess_env(job), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["error"]["exit_code"] == 1 and doc["summary"]["records_errored"] == 1
    assert "Traceback" not in result.stderr


def test_every_option_has_help_text_and_the_help_is_plain_text(capsys):
    parser = build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = [parser, *subparsers[0].choices.values()]
    for p in parsers:
        if p.prog.endswith("conformance"):
            continue  # its options are pytest's, documented by the conformance suite
        for action in p._actions:
            assert action.help, f"{p.prog}: option {action.option_strings or action.dest} has no help"
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and "exit codes" in text and "130 interrupted" in text
    for name in ("run", "explain", "demo", "checkpoint", "dlq"):
        assert main([name, "--help"]) == 0
        assert "--json" in capsys.readouterr().out


def test_an_unexpected_error_is_one_line_exit_1_and_asks_for_a_report(monkeypatch, capsys):
    import agora.cli as cli

    def broken(args, out):
        raise RuntimeError("unexpected state")

    monkeypatch.setattr(cli, "cmd_explain", broken)
    assert main(["explain", "any:target"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == ("agora: internal error: RuntimeError: unexpected state — rerun with "
                    "--traceback and report it")
    assert main(["explain", "any:target", "--json"]) == 1
    doc = _one_document(capsys.readouterr().out)
    # the hint speaks to a person: it is on stderr, not in the document
    assert doc["error"] == {"type": "RuntimeError", "exit_code": 1,
                            "message": "internal error: RuntimeError: unexpected state"}
