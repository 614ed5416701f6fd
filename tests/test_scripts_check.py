"""``scripts/check`` fails on any finding of either tool, and says how to install a missing one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parents[1] / "scripts" / "check"


def tree_with_tools(tmp_path: Path, **exit_codes: int) -> Path:
    """A copy of ``scripts/check`` in ``tmp_path`` whose ``.venv/bin`` holds a stand-in for
    each tool named in ``exit_codes``: it records its arguments and exits with that code."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(CHECK, tmp_path / "scripts" / "check")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool, code in exit_codes.items():
        stand_in = bin_dir / tool
        stand_in.write_text(f'#!/bin/sh\necho "{tool} $*" >> "$0.calls"\nexit {code}\n')
        stand_in.chmod(0o755)
    return tmp_path


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(root / "scripts" / "check")], capture_output=True,
                          text=True, timeout=30, check=False)


def calls(root: Path, tool: str) -> str:
    record = root / ".venv" / "bin" / f"{tool}.calls"
    return record.read_text() if record.exists() else ""


def test_both_tools_clean_passes_and_runs_each_once(tmp_path: Path) -> None:
    root = tree_with_tools(tmp_path, ruff=0, mypy=0)
    result = run_check(root)
    assert result.returncode == 0, result.stderr
    assert calls(root, "ruff") == "ruff check .\n"
    assert calls(root, "mypy") == "mypy --strict\n"


@pytest.mark.parametrize(("ruff", "mypy"), [(1, 0), (0, 1)])
def test_a_finding_of_either_tool_fails_the_check(tmp_path: Path, ruff: int, mypy: int) -> None:
    root = tree_with_tools(tmp_path, ruff=ruff, mypy=mypy)
    assert run_check(root).returncode != 0
    # Both run whatever the other found, so one pass shows every finding.
    assert (calls(root, "ruff"), calls(root, "mypy")) == ("ruff check .\n", "mypy --strict\n")


def test_a_missing_tool_names_itself_and_the_install_command(tmp_path: Path) -> None:
    root = tree_with_tools(tmp_path, ruff=0)
    result = run_check(root)
    assert result.returncode == 2
    assert ".venv/bin/mypy is missing" in result.stderr
    assert "pip install -e '.[test]'" in result.stderr
    assert calls(root, "ruff") == ""  # nothing half-runs
