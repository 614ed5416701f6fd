"""The agora command: exit codes, run/explain on MODULE:OBJECT, checkpoint and dlq tools."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from agora.cli import main

JOB = textwrap.dedent('''
    from agora import (DeliveryConfig, IterableSource, JsonLinesSink, MapMiddleware, Pipeline,
                       SQLiteCheckpointStore, SQLiteDLQSink)

    def check(r):
        if r["id"] == 3:
            raise ValueError("id 3 is poison")
        return r

    def pipeline():
        import os
        d = os.environ["JOB_DIR"]
        return (Pipeline(IterableSource([{"id": i} for i in range(10)], name="ids"), id="job")
                .pipe(MapMiddleware(check, name="check"))
                .build(JsonLinesSink(d + "/out.jsonl"),
                       delivery=DeliveryConfig(checkpoint=SQLiteCheckpointStore(d + "/ckpt.db"),
                                               dlq=SQLiteDLQSink(d + "/dlq.db"))))

    broken = 42
''')


@pytest.fixture
def job(tmp_path, monkeypatch):
    (tmp_path / "cli_job_mod.py").write_text(JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("JOB_DIR", str(tmp_path))
    yield tmp_path
    sys.modules.pop("cli_job_mod", None)


def test_run_json_summary_and_exit_zero(job, capsys):
    assert main(["run", "cli_job_mod:pipeline", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records_written"] == 9 and summary["records_errored"] == 1
    assert len((job / "out.jsonl").read_text().splitlines()) == 9


def test_max_records_and_resume(job, capsys):
    assert main(["run", "cli_job_mod:pipeline", "--max-records", "4", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["records_consumed"] == 4
    assert main(["run", "cli_job_mod:pipeline", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["records_consumed"] == 6


def test_explain_json(job, capsys):
    assert main(["explain", "cli_job_mod:pipeline", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pipeline_id"] == "job" and data["lane"] == "linear"


def test_checkpoint_show_and_reset(job, capsys):
    main(["run", "cli_job_mod:pipeline"])
    capsys.readouterr()
    assert main(["checkpoint", "show", str(job / "ckpt.db"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["job"]["source"] == "ids"
    assert main(["checkpoint", "show", str(job / "ckpt.db")]) == 0
    assert capsys.readouterr().out.startswith("job: {")
    assert main(["checkpoint", "reset", "--store", str(job / "ckpt.db"), "--key", "job", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"key": "job", "reset": True}
    # once reset, the key is gone: asking for it is an error that lists the keys left
    assert main(["checkpoint", "show", str(job / "ckpt.db"), "--key", "job"]) == 2
    assert "no checkpoint key 'job'" in capsys.readouterr().err


def test_dlq_list(job, capsys):
    main(["run", "cli_job_mod:pipeline"])
    capsys.readouterr()
    assert main(["dlq", "list", str(job / "dlq.db"), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["count"] == listed["shown"] == 1
    [rec] = listed["records"]
    assert rec["stage"] == "middleware" and rec["record"] == {"id": 3}


def test_usage_errors_exit_2(job, capsys):
    assert main(["run", "no_colon"]) == 2
    assert main(["run", "not_a_module_xyz:thing"]) == 2
    assert main(["run", "cli_job_mod:broken"]) == 2
    assert "not a BoundPipeline" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["run", "cli_job_mod:pipeline", "--max-records", "-1"]) == 2
    assert main(["checkpoint", "show", str(job / "missing.db")]) == 2


def test_failed_run_exits_1(job, capsys, monkeypatch):
    (job / "cli_fail_mod.py").write_text(textwrap.dedent('''
        from agora import IterableSource, MapMiddleware, MemorySink, Pipeline
        def boom(r):
            raise RuntimeError("transform exploded")
        pipeline = Pipeline(IterableSource([{"a": 1}])).pipe(MapMiddleware(boom)).build(MemorySink())
    '''))
    assert main(["run", "cli_fail_mod:pipeline"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: transform exploded" in err
    sys.modules.pop("cli_fail_mod", None)


def test_version_and_help_exit_zero(capsys):
    assert main(["--version"]) == 0
    assert "0.3.0" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_demo_runs_end_to_end_and_leaves_inspectable_files(tmp_path, capsys, monkeypatch, no_orphans):
    import pyarrow.parquet as pq

    assert main(["demo", "--rows", "3000", "--dir", str(tmp_path / "d"), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # one document; the human text went to stderr
    assert "generating 3,000 order rows" in captured.err
    assert summary["records_written"] == 3000 and summary["records_errored"] == 2
    assert summary["runtime"]["dlq_writes"] == 2
    assert summary["runtime"]["process_batch"]["enrich"]["batches_ok"] >= 1
    d = tmp_path / "d"
    assert pq.read_table(d / "orders_enriched.parquet").num_rows == 3000
    assert "risk" in pq.read_table(d / "orders_enriched.parquet").schema.names
    monkeypatch.setenv("AGORA_DEMO_DIR", str(d))
    assert main(["explain", "agora.demo:pipeline"]) == 0
    assert "enrich" in capsys.readouterr().out
    # a second run resumes at the end of the input: nothing left to do
    assert main(["run", "agora.demo:pipeline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records_consumed"] == 0
    assert main(["dlq", "list", str(d / "dlq.db")]) == 0
    assert "source_record" in capsys.readouterr().out


def test_dlq_replay_resends_fixed_records(job, capsys, monkeypatch):
    main(["run", "cli_job_mod:pipeline"])
    capsys.readouterr()
    (job / "cli_fixed_mod.py").write_text(textwrap.dedent('''
        import os
        from agora import DeliveryConfig, IterableSource, JsonLinesSink, Pipeline
        def pipeline():
            return Pipeline(IterableSource([]), id="fixed").build(
                JsonLinesSink(os.environ["JOB_DIR"] + "/replayed.jsonl"))
    '''))
    # the records belong to pipeline "job": replaying them into "fixed" is asked for explicitly
    assert main(["dlq", "replay", str(job / "dlq.db"), "--into", "cli_fixed_mod:pipeline",
                 "--pipeline-id", "job", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records_written"] == 1
    assert json.loads((job / "replayed.jsonl").read_text()) == {"id": 3}
    assert main(["dlq", "replay", str(job / "dlq.db")]) == 2  # --into is required
    sys.modules.pop("cli_fixed_mod", None)


def test_progress_line_draws_only_on_a_tty():
    import io

    from agora.cli import ProgressLine
    from agora.runtime.engine import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    p = Progress()
    p.consumed, p.written, p.done = 10, 9, True
    silent, tty = io.StringIO(), Tty()
    ProgressLine(silent)(p)
    line = ProgressLine(tty)
    line.enabled = True  # CI may be set in the environment running this test
    line(p)
    assert silent.getvalue() == "" and "consumed 10" in tty.getvalue()


def test_dlq_list_shows_the_attempt_count_when_a_record_has_one(tmp_path, capsys):
    import asyncio

    from agora.records import DLQRecord, DLQStage
    from agora.stores import JsonLinesDLQSink

    async def write() -> None:
        dlq = JsonLinesDLQSink(tmp_path / "dlq.jsonl")
        await dlq.open()
        common = dict(pipeline_id="p", run_id="r", stage=DLQStage.MIDDLEWARE,
                      error_type="TimeoutError", error_message="slow", source="s")
        await dlq.write(DLQRecord(**common, record={"id": 1}, attempt=2, max_attempts=3))
        await dlq.write(DLQRecord(**common, record={"id": 2}))
        await dlq.close()

    asyncio.run(write())
    assert main(["dlq", "list", str(tmp_path / "dlq.jsonl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "middleware       attempt 3 of 3 TimeoutError: slow" in lines[0]
    assert "attempt" not in lines[1] and "TimeoutError: slow" in lines[1]


def test_dlq_list_filters_by_a_stage_named_by_the_code_that_wrote_the_records(tmp_path, capsys):
    import asyncio

    from agora.records import DLQRecord
    from agora.stores import JsonLinesDLQSink

    async def write() -> None:
        dlq = JsonLinesDLQSink(tmp_path / "dlq.jsonl")
        await dlq.open()
        common = dict(pipeline_id="p", run_id="r", error_type="E", error_message="m", source="s")
        await dlq.write(DLQRecord(**common, stage="transform", record={"id": 1}))
        await dlq.write(DLQRecord(**common, stage="middleware", record={"id": 2}))
        await dlq.close()

    asyncio.run(write())
    assert main(["dlq", "list", str(tmp_path / "dlq.jsonl"), "--stage", "transform", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["count"] == 1 and listed["records"][0]["record"] == {"id": 1}
    assert main(["dlq", "list", str(tmp_path / "dlq.jsonl"), "--stage", "transfrom"]) == 2
    err = capsys.readouterr().err
    assert "no record has stage 'transfrom'" in err and "other stages in this file: transform" in err
