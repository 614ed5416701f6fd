"""The project cites its own contract (``docs/contract.md`` §N), never an outside document."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Folders that hold no project text: environments, caches, build output, run artefacts.
SKIPPED_DIRS = {".venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
                ".conformance", ".benchmarks", "__pycache__", "build", "dist", "agora-demo",
                "example-output"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".ini", ".yml", ".yaml"}
SCRIPT_DIRS = {"scripts", ".ci"}  # their commands have no suffix

# Built from pieces so that this file does not match itself.
FOREIGN_CITATION = re.compile(
    "|".join([r"\bSPEC" + r"\s*§", r"\bSPEC" + r"\.md\b", r"\bthe " + r"spec\b"]), re.IGNORECASE
)


def project_text_files(root: Path) -> list[Path]:
    """Every source, doc and script file under ``root`` outside the skipped folders."""
    found = []
    for folder, dirs, files in os.walk(root):
        # Pruned in place so that the walk never enters an environment or a cache.
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder, name)
            parts = path.relative_to(root).parts
            if path.suffix in TEXT_SUFFIXES or (path.suffix == "" and parts[0] in SCRIPT_DIRS):
                found.append(path)
    return sorted(found)


def foreign_citations(root: Path) -> list[str]:
    """``file:line: text`` for every line under ``root`` that cites an outside document."""
    hits = []
    for path in project_text_files(root):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FOREIGN_CITATION.search(line):
                hits.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return hits


def test_no_file_cites_an_outside_document() -> None:
    hits = foreign_citations(ROOT)
    assert not hits, (
        "these lines cite a document outside the project; cite docs/contract.md §N (same "
        "section numbers) or state the guarantee in the project's own words:\n"
        + "\n".join(hits)
    )


def test_the_scan_finds_citations_in_sources_docs_and_scripts(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text('"""Fine (contract §7)."""\n# see SPEC' + " §7\n")
    (tmp_path / "README.md").write_text("As the " + "spec says.\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "check").write_text("# per SPEC" + ".md\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "lib.py").write_text("# SPEC" + " §1 (not ours)\n")
    (tmp_path / "data.csv").write_text("SPEC" + " §1\n")
    assert foreign_citations(tmp_path) == [
        "README.md:1: As the " + "spec says.",
        "pkg/mod.py:2: # see SPEC" + " §7",
        "scripts/check:1: # per SPEC" + ".md",
    ]
