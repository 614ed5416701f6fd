"""Runs every script in examples/ as a user would (``python examples/X.py --out DIR``) and
checks what it wrote: row counts, files, and that nothing was written outside DIR."""

from __future__ import annotations

import ast
import csv
import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.docs.runner import REPO, Finished, run_python

EXAMPLES = REPO / "examples"


def run_example(name: str, tmp_path: Path) -> tuple[Path, Finished]:
    """Run ``examples/<name>.py --out <tmp>/out`` from an empty working folder."""
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    finished = run_python([str(EXAMPLES / f"{name}.py"), "--out", str(out)], cwd=cwd,
                          timeout_s=120, env={"PYTHONDONTWRITEBYTECODE": "1"}).check()
    stray = list(cwd.iterdir())
    assert stray == [], f"{name} wrote outside its --out folder: {stray}"
    return out, finished


def dlq_records(path: Path, tmp_path: Path) -> list[dict[str, object]]:
    """The DLQ as ``agora dlq list --json`` shows it."""
    listed = run_python(["-m", "agora", "dlq", "list", str(path), "--json"], cwd=tmp_path,
                        timeout_s=60).check()
    document = json.loads(listed.stdout)  # exactly one JSON document
    assert document["count"] == len(document["records"])
    return document["records"]


@pytest.mark.timeout(150)
def test_csv_to_parquet(tmp_path: Path, no_orphans: None) -> None:
    out, finished = run_example("csv_to_parquet", tmp_path)
    table = pq.read_table(out / "orders.parquet")
    assert table.num_rows == 1000
    assert table.column_names == ["order_id", "quantity", "unit_price", "total"]
    rows = table.to_pylist()
    assert sorted(r["order_id"] for r in rows) == list(range(1000))
    assert all(r["total"] == round(r["quantity"] * r["unit_price"], 2) for r in rows)
    dead = dlq_records(out / "dlq.db", tmp_path)
    assert [d["stage"] for d in dead] == ["source_record", "source_record"]
    assert "process-isolated" in finished.stdout
    # The second, freshly built job resumed after the end and read nothing.
    assert "consumed 0  written 0" in finished.stdout


@pytest.mark.timeout(150)
def test_sqlite_table_sink(tmp_path: Path, no_orphans: None) -> None:
    out, _ = run_example("sqlite_table_sink", tmp_path)
    with sqlite3.connect(out / "orders.db") as conn:
        ids = [i for (i,) in conn.execute("SELECT order_id FROM orders ORDER BY order_id")]
    conn.close()
    rejected = {49, 99, 149, 199}  # no customer
    assert ids == [i for i in range(200) if i != 7 and i not in rejected]
    dead = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert sorted(d["record"]["order_id"] for d in dead) == sorted(rejected)
    assert {d["stage"] for d in dead} == {"sink_write"}
    assert all("has no customer" in d["error_message"] for d in dead)


@pytest.mark.timeout(150)
def test_paged_api_source_resumes_exactly(tmp_path: Path, no_orphans: None) -> None:
    out, finished = run_example("paged_api_source", tmp_path)
    ids = [json.loads(line)["order_id"] for line in (out / "orders.jsonl").read_text().splitlines()]
    assert ids == list(range(95)), "every order once, in order, across the two runs"
    assert "consumed 25  written 25" in finished.stdout
    assert "consumed 70  written 70" in finished.stdout


@pytest.mark.timeout(150)
def test_row_lane(tmp_path: Path, no_orphans: None) -> None:
    out, finished = run_example("row_lane", tmp_path)
    with open(out / "views.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    lines = [json.loads(line) for line in (out / "views.jsonl").read_text().splitlines()]
    assert len(rows) == len(lines) == 270
    assert all(r["user"] != "test" and r["user"] == r["user"].lower() for r in lines)
    assert [r["user"] for r in rows] == [r["user"] for r in lines]
    assert "consumed 300  written 270  dropped 30" in finished.stdout
    assert "writer      fan_out, input python_batches" in finished.stdout


@pytest.mark.timeout(150)
def test_dlq_replay_adds_the_fixed_records(tmp_path: Path, no_orphans: None) -> None:
    out, finished = run_example("dlq_replay", tmp_path)
    assert "3 DLQ record(s)" in finished.stderr  # what `agora dlq list` reported
    with open(out / "orders.csv", newline="", encoding="utf-8") as fh:
        ids = sorted(int(r["order_id"]) for r in csv.DictReader(fh))
    assert ids != [5, 17, 33], "the replay replaced the first run's output instead of adding to it"
    assert ids == list(range(40)), "37 from the first run plus the 3 replayed, once each"


@pytest.mark.timeout(150)
def test_enrich_http_keeps_source_order_and_dead_letters_the_unknown_customer(
        tmp_path: Path, no_orphans: None) -> None:
    out, finished = run_example("enrich_http", tmp_path)
    lines = [json.loads(line) for line in (out / "orders.jsonl").read_text().splitlines()]
    assert [r["order_id"] for r in lines] == [i for i in range(200) if i % 40 != 13]
    assert all(r["tier"] == ("gold" if r["customer_id"] % 3 == 0 else "basic") for r in lines)
    dead = [json.loads(line) for line in (out / "dlq.jsonl").read_text().splitlines()]
    assert [d["record"]["order_id"] for d in dead] == [13, 53, 93, 133, 173]
    assert all("404" in d["error_message"] for d in dead)
    assert "I/O lane, up to 32 in flight" in finished.stdout
    assert "retries 4," in finished.stdout  # customers 0, 10, 20, 30 were busy once


# -- what every example promises -----------------------------------------------------------

def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.py"))


def test_there_are_at_least_five_examples_and_each_is_tested() -> None:
    names = {p.stem for p in example_files()}
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert len(names) >= 5, names
    untested = {n for n in names if not any(t.startswith(n) for t in tested)}
    assert not untested, f"examples without a test here: {untested}"


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_says_what_it_shows_and_how_to_run_it(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    assert "Shows:" in doc and f"python examples/{path.name}" in doc, (
        f"{path.name}: its docstring must say what it shows and how to run it")
    assert any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
               for node in tree.body), f"{path.name}: needs an `if __name__ == \"__main__\":` guard"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agora"):
            assert node.module == "agora", (
                f"{path.name}: examples use only the public API (`from agora import …`); "
                f"got `from {node.module} import …`")


def test_examples_index_lists_every_example() -> None:
    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in example_files() if p.name not in index]
    assert not missing, f"examples/README.md does not list {missing}"
