"""The layout stays readable: the map names every module, sizes are explained, imports point down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import agora

PACKAGE = Path(agora.__file__).parent

#: ~400 lines is a signal to split, not a cliff: a module a few lines past it needs no
#: written reason, one clearly past it does (the words "400 lines" in its docstring).
SIZE_SIGNAL = 400
SIZE_SLACK = 10

#: Packages below the runtime: they must not import the runtime, the builder, the command
#: or the facade (which imports all three).
LOWER_PACKAGES = ("sources", "sinks", "middleware", "stores", "process")
UPPER_PACKAGES = ("agora.runtime", "agora.pipeline", "agora.cli")


def points_up(name: str) -> bool:
    """Whether importing ``name`` from a lower package would reach above it."""
    return name == "agora" or any(name == up or name.startswith(up + ".") for up in UPPER_PACKAGES)


def modules() -> list[Path]:
    """Every module of the package except the ``__init__.py`` files (their package stands
    for them in the map)."""
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def map_entries(doc: str) -> dict[str, set[str]]:
    """The module map in ``doc``, as {package ("" for the top level): module file names}.

    An entry starts on a line indented by four spaces (``runtime/   plan.py (…), …``) and
    continues on the more deeply indented lines after it.
    """
    block = doc.split("Module map", 1)[1].split("Public surface", 1)[0]
    entries: dict[str, set[str]] = {}
    key = ""
    for line in block.splitlines():
        if re.match(r"^    \S", line):
            first = line.split()[0]
            key = first[:-1] if first.endswith("/") else ""
        elif not line.startswith("     "):
            continue
        entries.setdefault(key, set()).update(re.findall(r"[\w]+\.py\b", line))
    return entries


def test_map_parser_reads_entries_and_continuations() -> None:
    doc = """Module map:

    top.py           the top; also other.py
    pkg/             a.py (one),
                     b.py (two)

Public surface: not.py
"""
    assert map_entries(doc) == {"": {"top.py", "other.py"}, "pkg": {"a.py", "b.py"}}


def test_module_map_lists_every_module_and_only_modules_that_exist() -> None:
    assert agora.__doc__ is not None
    listed = map_entries(agora.__doc__)
    actual: dict[str, set[str]] = {}
    for path in modules():
        package = path.parent.relative_to(PACKAGE).as_posix()
        actual.setdefault("" if package == "." else package, set()).add(path.name)
    missing = {pkg: sorted(names - listed.get(pkg, set())) for pkg, names in actual.items()}
    stale = {pkg: sorted(names - actual.get(pkg, set())) for pkg, names in listed.items()}
    assert not any(missing.values()), (
        f"modules missing from the module map in agora/__init__.py: "
        f"{ {k: v for k, v in missing.items() if v} } — add them to their package's entry"
    )
    assert not any(stale.values()), (
        f"the module map in agora/__init__.py names modules that do not exist: "
        f"{ {k: v for k, v in stale.items() if v} } — remove or rename them"
    )


def test_modules_well_past_400_lines_say_why_in_their_docstring() -> None:
    unexplained = []
    for path in modules():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= SIZE_SIGNAL + SIZE_SLACK:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "400 lines" not in doc:
            unexplained.append(f"{path.relative_to(PACKAGE.parent)} ({lines} lines)")
    assert not unexplained, (
        f"modules over ~{SIZE_SIGNAL} lines without a reason: {unexplained} — split them by "
        f"concept, or say in the module docstring why not (the words '400 lines')"
    )


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` or ``from … import`` in ``tree`` names (absolute only)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_lower_packages_never_import_the_runtime_or_the_facade() -> None:
    upward = []
    for package in LOWER_PACKAGES:
        for path in sorted((PACKAGE / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for name in sorted(imported_modules(tree)):
                if points_up(name):
                    upward.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not upward, f"imports pointing up: {upward} — move the shared code down instead"


def test_import_scan_sees_function_level_and_from_imports() -> None:
    tree = ast.parse("import os\nfrom agora.runtime import plan\ndef f():\n    import agora\n")
    assert imported_modules(tree) == {"os", "agora.runtime", "agora"}
    assert [points_up(n) for n in ("agora", "agora.runtime.plan", "agora.pipeline", "agora.errors",
                                   "agora.runtimes", "os")] == [True, True, True, False, False, False]
