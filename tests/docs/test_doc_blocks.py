"""Runs the code blocks of README.md and docs/*.md, so the documentation cannot drift from
the code.

The convention (for anyone writing docs):

* Every ```python block is a runnable script. It runs in a child process, as
  ``__main__``, in a fresh empty working folder, with a timeout; it passes if it exits 0.
  Write the inputs it needs in the block itself, or see ``needs-files`` below.
* ``<!-- not-run: reason -->`` on the line(s) just above a fence marks a fragment (a
  signature, a sketch with placeholders). The reason is required.
* ``<!-- continues -->`` above a block appends it to the previous runnable Python block
  of the same file: the blocks run together as one script (a page that builds a program
  step by step).
* ``<!-- needs-files: a.csv b.json -->`` copies those files from ``tests/docs/data/`` into
  the working folder first (for an example that reads an input it does not show how to
  make).
* Shell blocks (```bash, ```sh, ```console or no language) are not run; each ``agora …``
  line in them must parse with the real command-line parser (a synopsis line with
  ``[optional]`` or ``a|b`` parts only needs its subcommand to exist).

A marker misspelled as ``not_run``/``not-runnable``/``continue``/``needs`` is an error,
not a silently run block.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agora.cli import build_parser
from tests.docs.blocks import (
    REPO,
    Block,
    DocScript,
    MarkerError,
    agora_commands,
    doc_files,
    parse_blocks,
    python_scripts,
    shell_blocks,
)
from tests.docs.runner import run_python

DATA = Path(__file__).parent / "data"


def _scripts() -> list[DocScript]:
    return [script for path in doc_files() for script in python_scripts(path)[0]]


def _params() -> list[object]:
    return [pytest.param(script, id=script.id) for script in _scripts()]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("script", _params())
def test_python_block_runs(script: DocScript, tmp_path: Path, no_orphans: None) -> None:
    for name in script.needs_files:
        source = DATA / name
        assert source.is_file(), f"{script.id}: needs-files names {name}, not in {DATA}"
        shutil.copy(source, tmp_path / name)
    (tmp_path / "doc_block.py").write_text(script.code, encoding="utf-8")
    finished = run_python(["doc_block.py"], cwd=tmp_path, timeout_s=150)
    if finished.returncode != 0:
        raise AssertionError(f"{script.id} (heading {script.first.heading!r}) failed:\n"
                             f"{finished.output}")


def _shell_params() -> list[object]:
    return [pytest.param(block, command, id=f"{block.where}:{command[1]}")
            for path in doc_files() for block in shell_blocks(path)
            for command in agora_commands(block)]


@pytest.mark.parametrize(("block", "command"), _shell_params())
def test_agora_command_parses(block: Block, command: list[str]) -> None:
    parser = build_parser()
    if command[1] == "conformance":
        # `agora conformance` hands every argument to the suite (pytest): only the
        # subcommand itself is the CLI's; the suite's options are tested in tests/conformance.
        subcommands = next(a for a in parser._actions if a.dest == "command").choices
        assert "conformance" in subcommands, f"{block.where}: no `agora conformance` command"
        return
    synopsis = any(word.startswith("[") or "|" in word for word in command)
    args = [command[1], "--help"] if synopsis else command[1:]
    if synopsis:
        choices = command[2].split("|") if len(command) > 2 and "|" in command[2] else []
        for choice in choices:  # e.g. "show|reset": each alternative must be accepted
            _parses(parser, [command[1], choice, *command[3:4]], block)
    _parses(parser, args, block)


def _parses(parser: object, args: list[str], block: Block) -> None:
    try:
        parser.parse_args(args)  # type: ignore[attr-defined]
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(f"{block.where}: `agora {' '.join(args)}` is not a valid "
                                 f"command (argparse exit {exc.code})") from None


def test_every_doc_is_parsed_and_the_main_pages_hold_runnable_code() -> None:
    # Parsing raises MarkerError for a missing reason or a continuation with nothing before
    # it, so this also checks every marker of every doc.
    runnable = {path.name: len(python_scripts(path)[0]) for path in doc_files()}
    assert runnable["README.md"] >= 1, runnable
    assert runnable["writing-sources-and-sinks.md"] == 1, (
        f"the writing guide's blocks should form one script (source, sink, pipeline, "
        f"harnesses); got {runnable}")


def test_not_run_blocks_are_listed_with_their_reasons() -> None:
    skipped = [b for path in doc_files() for b in python_scripts(path)[1]]
    for block in skipped:
        assert len(block.markers["not-run"]) >= 10, f"{block.where}: give a real reason"


def test_not_run_without_reason_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n\n<!-- not-run -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(MarkerError, match="needs a reason"):
        python_scripts(doc)


def test_misspelled_marker_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n\n<!-- not_run: fragment -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(MarkerError, match="unknown marker"):
        parse_blocks(doc)


def test_continues_needs_a_block_before_it(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n\n<!-- continues -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(MarkerError, match="no runnable Python block"):
        python_scripts(doc)


def test_continued_blocks_run_as_one_script(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# a\n\n```python\nx = 1\n```\n\ntext\n\n"
        "<!-- continues -->\n```python\nassert x == 1\n```\n"
        "\n<!-- not-run: a signature with placeholders -->\n```python\nf(...)\n```\n",
        encoding="utf-8")
    scripts, skipped = python_scripts(doc)
    assert [s.code for s in scripts] == ["x = 1\n\n\nassert x == 1\n"]
    assert [b.code for b in skipped] == ["f(...)\n"]


def test_a_failing_block_is_reported(tmp_path: Path, no_orphans: None) -> None:
    (tmp_path / "doc_block.py").write_text("raise SystemExit('boom')\n", encoding="utf-8")
    finished = run_python(["doc_block.py"], cwd=tmp_path, timeout_s=30)
    with pytest.raises(AssertionError, match="boom"):
        finished.check()


def test_repo_root_is_found() -> None:
    assert (REPO / "README.md").is_file() and (REPO / "agora").is_dir()


def test_documented_max_buffer_size_default_matches_the_code() -> None:
    import re

    from agora import DeliveryConfig

    default = DeliveryConfig().max_buffer_size
    found = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"max_buffer_size`\**\s*[,(]\s*default ([\d,]+)", text):
            found.append((path.name, int(match[1].replace(",", ""))))
    assert {name for name, _ in found} >= {"guide.md", "benchmarks.md"}, found
    wrong = [(name, value) for name, value in found if value != default]
    assert not wrong, f"docs state a max_buffer_size default other than {default:,}: {wrong}"
