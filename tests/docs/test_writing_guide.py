"""The source and sink built in docs/writing-sources-and-sinks.md: the page's Python blocks,
saved as one module, pass the conformance suite (run with the page's own commands), and
each failure path the page's components describe behaves as the page says."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shlex
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agora import Checkpoint, CheckpointError
from agora.records import MalformedRecord
from tests.docs.blocks import REPO, python_scripts, shell_blocks
from tests.docs.runner import run_python

GUIDE = REPO / "docs" / "writing-sources-and-sinks.md"
MODULE = "sqlite_records"  # the module name the page's commands use


def guide_code() -> str:
    scripts, _ = python_scripts(GUIDE)
    assert len(scripts) == 1, f"{GUIDE.name}: expected its blocks to form one script"
    return scripts[0].code


def conformance_commands() -> list[list[str]]:
    """The ``python -m conformance …`` lines of the page, as argument lists after ``python``."""
    commands = []
    for block in shell_blocks(GUIDE):
        for line in block.code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:3] == ["python", "-m", "conformance"]:
                commands.append(words[1:])
    return commands


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    folder = tmp_path_factory.mktemp("guide")
    path = folder / f"{MODULE}.py"
    path.write_text(guide_code(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"guide_{MODULE}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_gives_one_command_for_the_source_and_one_for_the_sink() -> None:
    commands = conformance_commands()
    assert [c[2] for c in commands] == ["--source", "--sink"], commands


@pytest.mark.timeout(420)
@pytest.mark.parametrize("command", conformance_commands(), ids=lambda c: c[2].strip("-"))
def test_guide_component_is_conformant(command: list[str], tmp_path: Path,
                                       no_orphans: None) -> None:
    (tmp_path / f"{MODULE}.py").write_text(guide_code(), encoding="utf-8")
    report = tmp_path / "report.json"
    # The command as the page gives it, at the standard level, with the report kept.
    args = [*command, "--conformance-level", "standard", "--conformance-report", str(report),
            "-p", "no:cacheprovider"]
    finished = run_python(args, cwd=tmp_path, timeout_s=400, env={"PYTHONPATH": str(tmp_path)})
    assert report.exists(), f"no conformance report:\n{finished.output}"
    data = json.loads(report.read_text(encoding="utf-8"))
    (target,) = data["targets"]
    failing = [(c["id"], c["status"], (c["reason"] or "")[:300]) for c in target["checks"]
               if c["status"] not in ("pass", "unsupported")]
    assert target["verdict"] == "CONFORMANT" and finished.returncode == 0, (
        f"{target['verdict']}: {failing}\n{finished.output[-4000:]}")
    statuses = {c["id"]: c["status"] for c in target["checks"]}
    # The rules the page teaches are among the checks that passed.
    taught = (["SRC-CKPT-02", "SRC-CKPT-05", "SRC-CKPT-07", "SRC-LIMIT-02", "SRC-LIFE-02"]
              if command[2] == "--source" else
              ["SNK-LIFE-02", "SNK-LIFE-04", "SNK-LIFE-08", "SNK-LIFE-12", "SNK-WRITE-04",
               "SNK-WRITE-05"])
    assert {i: statuses.get(i) for i in taught} == {i: "pass" for i in taught}


# -- the failure paths of the page's components ------------------------------------------

def make_table(guide: ModuleType, path: Path, bodies: list[str]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(guide.CREATE_TABLE.format(table="records"))
        conn.executemany("INSERT INTO records (body) VALUES (?)", [(b,) for b in bodies])
    conn.close()


async def read_all(source: Any, checkpoint: Checkpoint | None = None) -> list[Any]:
    await source.prepare_resume(checkpoint)
    await source.open()
    try:
        return [item async for item in source.stream_batches()]
    finally:
        await source.close()


def checkpoint_of(source: Any, value: Any) -> Checkpoint:
    return Checkpoint(pipeline_id="p", run_id="r", source=source.source_name, value=value)


def test_malformed_body_fails_naming_the_row(guide: ModuleType, tmp_path: Path) -> None:
    make_table(guide, tmp_path / "in.db", ['{"id": 1}', "{broken", '{"id": 3}'])
    source = guide.SQLiteRecordSource(tmp_path / "in.db")
    with pytest.raises(ValueError, match=r"seq 2: body is not JSON .*on_malformed='dlq'"):
        asyncio.run(read_all(source))


def test_malformed_body_becomes_a_marker_and_the_position_passes_it(
        guide: ModuleType, tmp_path: Path) -> None:
    make_table(guide, tmp_path / "in.db", ['{"id": 1}', "{broken", '{"id": 3}'])
    source = guide.SQLiteRecordSource(tmp_path / "in.db", on_malformed="dlq")
    seen: list[tuple[Any, Any]] = []

    async def go() -> None:
        await source.prepare_resume(None)
        await source.open()
        async for item in source.stream_batches():
            seen.append((item, source.current_checkpoint()))
        await source.close()

    asyncio.run(go())
    items = [item for item, _ in seen]
    assert items[0] == [{"id": 1}] and items[2] == [{"id": 3}]
    assert isinstance(items[1], MalformedRecord) and items[1].raw == "{broken"
    assert [cp["after_seq"] for _, cp in seen] == [1, 2, 3]


@pytest.mark.parametrize("value", [
    {"table": "other", "after_seq": 1},
    {"line": 3},
    {"table": "records", "after_seq": "1"},
    7,
])
def test_foreign_checkpoint_is_refused(guide: ModuleType, tmp_path: Path, value: Any) -> None:
    make_table(guide, tmp_path / "in.db", ['{"id": 1}'])
    source = guide.SQLiteRecordSource(tmp_path / "in.db")
    with pytest.raises(CheckpointError, match="agora checkpoint reset"):
        asyncio.run(source.prepare_resume(checkpoint_of(source, value)))


def test_same_instance_reruns_from_the_start_without_a_checkpoint(
        guide: ModuleType, tmp_path: Path) -> None:
    make_table(guide, tmp_path / "in.db", [json.dumps({"id": i}) for i in range(5)])
    source = guide.SQLiteRecordSource(tmp_path / "in.db", page_size=2)
    first = asyncio.run(read_all(source))
    second = asyncio.run(read_all(source))
    assert first == second == [[{"id": 0}, {"id": 1}], [{"id": 2}, {"id": 3}], [{"id": 4}]]


def test_missing_input_fails_at_open_naming_source_and_file(
        guide: ModuleType, tmp_path: Path) -> None:
    source = guide.SQLiteRecordSource(tmp_path / "absent.db")
    with pytest.raises(OSError, match=r"sqlite:absent.db:records.*absent\.db"):
        asyncio.run(read_all(source))
    assert not (tmp_path / "absent.db").exists(), "a source must not create its input"


def test_missing_table_fails_at_open(guide: ModuleType, tmp_path: Path) -> None:
    make_table(guide, tmp_path / "in.db", [])
    source = guide.SQLiteRecordSource(tmp_path / "in.db", table="orders")
    with pytest.raises(OSError, match="cannot read table 'orders'"):
        asyncio.run(read_all(source))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"table": "records; DROP TABLE x"}, "plain SQL identifier"),
    ({"page_size": 0}, "page_size must be >= 1"),
    ({"on_malformed": "skip"}, "on_malformed must be 'fail' or 'dlq'"),
])
def test_source_arguments_are_checked(guide: ModuleType, tmp_path: Path,
                                      kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        guide.SQLiteRecordSource(tmp_path / "in.db", **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"table": "1table"}, "plain SQL identifier"),
    ({"mode": "x"}, "mode must be 'w'"),
])
def test_sink_arguments_are_checked(guide: ModuleType, tmp_path: Path,
                                    kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        guide.SQLiteRecordSink(tmp_path / "out.db", **kwargs)


def test_sink_open_in_a_missing_folder_names_the_sink(guide: ModuleType, tmp_path: Path) -> None:
    sink = guide.SQLiteRecordSink(tmp_path / "no-such-folder" / "out.db")
    with pytest.raises(OSError, match=r"sink 'sqlite:out.db:records'.*no-such-folder"):
        asyncio.run(sink.open())
    asyncio.run(sink.close())  # still closable


def test_sink_refuses_one_record_and_keeps_the_rest(guide: ModuleType, tmp_path: Path) -> None:
    sink = guide.SQLiteRecordSink(tmp_path / "out.db")
    batch = [{"id": 1}, {"id": 2, "blob": b"x"}, {"id": 3}]

    async def go() -> Any:
        await sink.open()
        results = await sink.write_batch(batch)
        batch[0]["id"] = 99  # the caller reuses its records
        await sink.close()
        return results

    results = asyncio.run(go())
    assert [r.written for r in results] == [True, False, True]
    assert isinstance(results[1].error, TypeError)
    with sqlite3.connect(tmp_path / "out.db") as conn:
        stored = [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY seq")]
    conn.close()
    assert stored == [{"id": 1}, {"id": 3}]


def test_sink_misuse_raises_naming_the_sink(guide: ModuleType, tmp_path: Path) -> None:
    from agora.errors import LifecycleError

    sink = guide.SQLiteRecordSink(tmp_path / "out.db")
    with pytest.raises(LifecycleError, match="before open"):
        asyncio.run(sink.write({"id": 1}))

    async def after_close() -> None:
        await sink.open()
        await sink.close()
        await sink.close()  # idempotent
        await sink.flush()

    with pytest.raises(LifecycleError, match="closed sink 'sqlite:out.db:records'"):
        asyncio.run(after_close())


def test_resumed_sink_keeps_earlier_output(guide: ModuleType, tmp_path: Path) -> None:
    async def write(resume: bool, record: dict[str, int]) -> None:
        sink = guide.SQLiteRecordSink(tmp_path / "out.db")  # mode="w"
        if resume:
            sink.resume_output()
        await sink.open()
        await sink.write(record)
        await sink.close()

    asyncio.run(write(False, {"id": 1}))
    asyncio.run(write(True, {"id": 2}))
    with sqlite3.connect(tmp_path / "out.db") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (2,)
    conn.close()
    asyncio.run(write(False, {"id": 3}))  # a fresh, non-resumed mode="w" sink starts over
    with sqlite3.connect(tmp_path / "out.db") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (1,)
    conn.close()


def test_module_name_matches_the_commands() -> None:
    for command in conformance_commands():
        assert all(arg.startswith(f"{MODULE}:") for arg in command[3::2]), command
