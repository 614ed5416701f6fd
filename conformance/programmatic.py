"""``conformance.run(...)``: run the suite from Python (tooling, registries) and get the JSON
report back. It runs ``python -m conformance`` in a subprocess, so behaviour is identical
to the command line and the caller's process is left untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["dotted_name", "run"]


def dotted_name(obj: str | Any, role: str) -> str:
    """``obj`` as a dotted path the child process can import: strings pass through; a
    class or function becomes ``module:qualname``. Raises TypeError for objects that
    cannot be imported by name (defined in ``__main__`` or inside a function)."""
    if isinstance(obj, str):
        return obj
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(
            f"conformance.run: {role} must be a dotted path (pkg.mod:Name) or a class / "
            f"function; got {type(obj).__name__} {obj!r}"
        )
    if module == "__main__" or "<locals>" in qualname:
        raise TypeError(
            f"conformance.run: {role} {qualname} is defined in {module!r}"
            f"{' inside a function' if '<locals>' in qualname else ''}; the suite runs in a "
            f"fresh process that imports it by name — move it to an importable module"
        )
    return f"{module}:{qualname}"


def run(
    *,
    sinks: Sequence[str | type] = (),
    sources: Sequence[str | type] = (),
    sink_factory: str | Any | None = None,
    source_factory: str | Any | None = None,
    sink_harness: str | Any | None = None,
    source_harness: str | Any | None = None,
    level: str = "standard",
    strict: bool = False,
    seed: int | None = None,
    extra_args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run the suite against targets — dotted paths or the classes themselves — and return
    the parsed JSON report. Factories and harnesses are dotted paths or the objects.

    The report has ``verdict`` (overall) and ``targets`` (per target: ``verdict``,
    ``counts``, ``checks`` with ``id``, ``title``, ``level``, ``status``, ``reason``, …),
    plus ``exit_code`` (pytest's). Raises ``RuntimeError`` with pytest's output when no
    report was produced (for instance a usage error).
    """
    if isinstance(sinks, (str, type)) or isinstance(sources, (str, type)):
        raise TypeError(
            "conformance.run: sinks= and sources= take a list (sinks=[MySink]); got one target"
        )
    args: list[str] = []
    for sink in sinks:
        args += ["--sink", dotted_name(sink, "sink")]
    for source in sources:
        args += ["--source", dotted_name(source, "source")]
    for flag, value in (
        ("--sink-factory", sink_factory),
        ("--source-factory", source_factory),
        ("--sink-harness", sink_harness),
        ("--source-harness", source_harness),
    ):
        if value:
            args += [flag, dotted_name(value, flag.lstrip("-"))]
    args += ["--conformance-level", level, "-q", "-p", "no:cacheprovider"]
    if strict:
        args.append("--conformance-strict")
    if seed is not None:
        args += ["--conformance-seed", str(seed)]
    with tempfile.TemporaryDirectory(prefix="conformance-run-") as tmp:
        report = Path(tmp) / "report.json"
        args += ["--conformance-report", str(report), *extra_args]
        # The child must import this very suite, even from a checkout that is not installed.
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        proc = subprocess.run(
            [sys.executable, "-m", "conformance", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if not report.exists():
            raise RuntimeError(
                f"the conformance run produced no report (exit {proc.returncode}):\n"
                f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
            )
        document: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    document["exit_code"] = proc.returncode
    return document
