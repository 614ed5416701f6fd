"""agora dlq replay: a thin caller of BoundPipeline.replay — exit codes, --json, --dry-run."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agora.cli import main
from agora.stores import read_dlq

JOB = textwrap.dedent('''
    import os
    from agora import (CsvSink, DeliveryConfig, IterableSource, MapMiddleware, Pipeline,
                       SyncSQLiteCheckpointStore, SQLiteDLQSink)

    POISON = {int(i) for i in os.environ.get("POISON", "").split(",") if i}

    def check(r):
        if r["id"] in POISON:
            raise ValueError("id is poison")
        return r

    def pipeline():
        d = os.environ["JOB_DIR"]
        return (Pipeline(IterableSource([{"id": i} for i in range(6)], name="ids"), id="job")
                .pipe(MapMiddleware(check, name="check"))
                .build(CsvSink(d + "/out.csv"),
                       delivery=DeliveryConfig(checkpoint=SyncSQLiteCheckpointStore(d + "/ckpt.db"),
                                               dlq=SQLiteDLQSink(d + "/dlq.db"))))
''')


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "replay_job_mod.py").write_text(JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("JOB_DIR", str(tmp_path))
    monkeypatch.setenv("POISON", "2,4")
    assert main(["run", "replay_job_mod:pipeline", "--json"]) == 0
    sys.modules.pop("replay_job_mod", None)
    yield tmp_path
    sys.modules.pop("replay_job_mod", None)


def fix(monkeypatch: pytest.MonkeyPatch, poison: str = "") -> None:
    monkeypatch.setenv("POISON", poison)
    sys.modules.pop("replay_job_mod", None)  # the next load sees the new POISON


def csv_ids(d: Path) -> list[str]:
    return [line for line in (d / "out.csv").read_text().splitlines()[1:]]


def test_replay_as_the_readme_says_appends_and_exits_0(job: Path, capsys, monkeypatch) -> None:
    capsys.readouterr()
    fix(monkeypatch)
    code = main(["dlq", "replay", str(job / "dlq.db"), "--into", "replay_job_mod:pipeline"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sent 2, handled 2" in out
    assert csv_ids(job) == ["0", "1", "3", "5", "2", "4"]
    # a second replay sends nothing and still exits 0
    assert main(["dlq", "replay", str(job / "dlq.db"), "--into", "replay_job_mod:pipeline",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["sent"], report["already_replayed"], report["ok"]) == (0, 2, True)
    assert csv_ids(job) == ["0", "1", "3", "5", "2", "4"]


def test_records_failing_again_exit_1_and_stay_in_the_dlq(job: Path, capsys, monkeypatch) -> None:
    capsys.readouterr()
    fix(monkeypatch, "4")
    code = main(["dlq", "replay", str(job / "dlq.db"), "--into", "replay_job_mod:pipeline"])
    out = capsys.readouterr().out
    assert code == 1
    assert "failed again 1" in out
    assert "1 record(s) failed again; they stay in the DLQ" in out
    assert len(list(read_dlq(job / "dlq.db"))) == 2  # updated in place, not copied


def test_json_prints_exactly_one_document_also_on_failure(job: Path, capsys, monkeypatch) -> None:
    capsys.readouterr()
    fix(monkeypatch, "2,4")
    code = main(["dlq", "replay", str(job / "dlq.db"), "--into", "replay_job_mod:pipeline",
                 "--json"])
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads(out)  # one document, nothing else on stdout
    assert (report["failed_again"], report["ok"]) == (2, False)


def test_dry_run_changes_nothing(job: Path, capsys, monkeypatch) -> None:
    capsys.readouterr()
    fix(monkeypatch)
    before = (job / "out.csv").read_bytes()
    code = main(["dlq", "replay", str(job / "dlq.db"), "--into", "replay_job_mod:pipeline",
                 "--dry-run", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["dry_run"] is True
    assert [w["error_type"] for w in report["would_send"]] == ["ValueError", "ValueError"]
    assert (job / "out.csv").read_bytes() == before
    assert main(["dlq", "replay", str(job / "dlq.db"), "--into", "replay_job_mod:pipeline",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sent"] == 2  # the dry run marked nothing


def test_foreign_pipeline_is_a_usage_error(job: Path, capsys, monkeypatch) -> None:
    capsys.readouterr()
    (job / "other_mod.py").write_text(textwrap.dedent('''
        import os
        from agora import IterableSource, JsonLinesSink, Pipeline
        def pipeline():
            return Pipeline(IterableSource([]), id="other").build(
                JsonLinesSink(os.environ["JOB_DIR"] + "/other.jsonl"))
    '''))
    try:
        code = main(["dlq", "replay", str(job / "dlq.db"), "--into", "other_mod:pipeline",
                     "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 2 and doc["error"]["exit_code"] == 2
        assert "--pipeline-id job" in doc["error"]["message"]
        assert main(["dlq", "replay", str(job / "dlq.db"), "--into", "other_mod:pipeline"]) == 2
        err = capsys.readouterr().err
        assert "holds no record of pipeline 'other', only of 'job' (2)" in err
        assert not (job / "other.jsonl").exists()
    finally:
        sys.modules.pop("other_mod", None)


def test_damaged_dlq_exits_1_with_a_json_error(job: Path, capsys) -> None:
    capsys.readouterr()
    bad = job / "bad.jsonl"
    bad.write_text('{"pipeline_id": "job"}\n')
    code = main(["dlq", "replay", str(bad), "--into", "replay_job_mod:pipeline", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["error"]["exit_code"] == 1
    assert "cannot read the DLQ" in doc["error"]["message"]
    assert "bad.jsonl, line 1: not a DLQ record" in doc["error"]["message"]


def test_replay_without_into_is_a_usage_error(job: Path, capsys) -> None:
    assert main(["dlq", "replay", str(job / "dlq.db")]) == 2
    assert "--into MODULE:OBJECT" in capsys.readouterr().err
