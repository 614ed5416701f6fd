"""Finds the code blocks of the README and ``docs/*.md`` and groups them into runnable
scripts, following the markers described in ``test_doc_blocks.py``."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REPO",
    "Block",
    "DocScript",
    "MarkerError",
    "agora_commands",
    "doc_files",
    "parse_blocks",
    "python_scripts",
    "shell_blocks",
]

REPO = Path(__file__).resolve().parents[2]

PYTHON_LANGS = frozenset({"python", "py", "python3"})
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console", ""})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^<!--\s*(?P<name>[A-Za-z_-]+)\s*(?::\s*(?P<arg>.*?))?\s*-->\s*$")
_KNOWN_MARKERS = frozenset({"not-run", "continues", "needs-files"})


class MarkerError(ValueError):
    """A doc uses a marker wrongly (unknown name, missing reason, nothing to continue)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, code and the markers above it."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    heading: str  # the nearest heading above it ("" at the top of a file)
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        shown = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path.name
        return f"{shown}:{self.line}"


@dataclass
class DocScript:
    """Runnable Python blocks joined into one script (a block plus the ones continuing it)."""

    blocks: list[Block]

    @property
    def first(self) -> Block:
        return self.blocks[0]

    @property
    def id(self) -> str:
        return self.first.where

    @property
    def code(self) -> str:
        return "\n\n".join(block.code for block in self.blocks)

    @property
    def needs_files(self) -> list[str]:
        names: list[str] = []
        for block in self.blocks:
            names += block.markers.get("needs-files", "").split()
        return names


def doc_files() -> list[Path]:
    """The documents whose code blocks are checked: README.md and docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced code block of ``path``, with the markers on the lines just above it
    (blank lines between markers and the fence are allowed)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    heading = ""
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker and marker["name"] in _KNOWN_MARKERS:
            pending[marker["name"]] = (marker["arg"] or "").strip()
        elif marker and marker["name"].lower().replace("_", "-").startswith(
                ("not", "continue", "need", "skip")):
            raise MarkerError(f"{path.name}:{i + 1}: unknown marker {line.strip()!r}; "
                              f"use one of {sorted(_KNOWN_MARKERS)}")
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
            pending = {}
        elif fence:
            start = i
            closing = fence["fence"]
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(closing):
                body.append(lines[i])
                i += 1
            info = fence["info"].strip().split()
            blocks.append(Block(path, start + 1, info[0].lower() if info else "",
                                "\n".join(body) + "\n", heading, pending))
            pending = {}
        elif line.strip():
            pending = {}
        i += 1
    return blocks


def python_scripts(path: Path) -> tuple[list[DocScript], list[Block]]:
    """The runnable scripts of ``path`` and the Python blocks marked ``not-run``."""
    scripts: list[DocScript] = []
    skipped: list[Block] = []
    for block in parse_blocks(path):
        if block.lang not in PYTHON_LANGS:
            continue
        if "not-run" in block.markers:
            if not block.markers["not-run"]:
                raise MarkerError(f"{block.where}: <!-- not-run --> needs a reason: "
                                  f"<!-- not-run: why this block cannot run -->")
            skipped.append(block)
        elif "continues" in block.markers:
            if not scripts:
                raise MarkerError(f"{block.where}: <!-- continues --> but no runnable Python "
                                  f"block comes before it in {path.name}")
            scripts[-1].blocks.append(block)
        else:
            scripts.append(DocScript([block]))
    return scripts, skipped


def shell_blocks(path: Path) -> list[Block]:
    return [b for b in parse_blocks(path) if b.lang in SHELL_LANGS and "not-run" not in b.markers]


def agora_commands(block: Block) -> list[list[str]]:
    """The ``agora …`` command lines of a shell block, as argument lists (comments and a
    leading ``$ `` prompt removed; continuation lines joined)."""
    commands: list[list[str]] = []
    text = block.code.replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip().removeprefix("$ ")
        if not line.startswith("agora "):
            continue
        words = shlex.split(line, comments=True)
        commands.append(words)
    return commands
