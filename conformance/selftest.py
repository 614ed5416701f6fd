"""The suite tested against itself: every built-in sink and source, every reference
component, and every deliberately broken mutant (release validation, ``./scripts/test``).

``python -m conformance.selftest [pytest options]`` runs one pytest session of the whole
suite over the built-ins and the references (each must be CONFORMANT), then runs each
mutant against the check designed to catch it (it must fail; a harness mutant must be
refused at resolution), and prints its mutation score::

    52/52 mutants caught, 0 false failures on 20 correct components

It exits non-zero on anything less. ``--list`` prints the equivalent per-target commands
(``pytest conformance --sink agora.MemorySink`` …) instead.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUILTIN_SINKS",
    "BUILTIN_SOURCES",
    "MutantResult",
    "builtin_args",
    "commands",
    "main",
    "run_mutants",
    "score_line",
]

BUILTIN_SINKS = (
    "agora.MemorySink",
    "agora.NullSink",
    "agora.StdoutSink",
    "agora.CsvSink",
    "agora.JsonLinesSink",
    "agora.ParquetSink",
    "agora.SQLiteDLQSink",
    "agora.JsonLinesDLQSink",
)
BUILTIN_SOURCES = (
    "agora.IterableSource",
    "agora.IterableBatchSource",
    "agora.ArrowBatchSource",
    "agora.CsvSource",
    "agora.ArrowCsvSource",
    "agora.JsonLinesSource",
    "agora.ArrowJsonLinesSource",
    "agora.ParquetSource",
)


def builtin_args(*, references: bool = False) -> list[str]:
    """``--sink X`` / ``--source Y`` for every built-in component (and, with
    ``references``, every reference component of ``conformance.mutants``)."""
    from conformance.mutants import REFERENCE_SINKS, REFERENCE_SOURCES

    sinks = BUILTIN_SINKS + (REFERENCE_SINKS if references else ())
    sources = BUILTIN_SOURCES + (REFERENCE_SOURCES if references else ())
    args: list[str] = []
    for sink in sinks:
        args += ["--sink", sink]
    for source in sources:
        args += ["--source", source]
    return args


@dataclass(frozen=True)
class MutantResult:
    """Whether one mutant was caught, and what the check said."""

    path: str
    caught_by: str
    caught: bool
    detail: str


def run_mutants(level: str = "standard", seed: int | None = None) -> list[MutantResult]:
    """Run every mutant against the check designed to catch it (in this process, each in
    its own temporary folder). A mutant is caught when that check FAILS — or, for a
    harness mutant, when resolution refuses it."""
    from conformance.catalogue import Status, get_check
    from conformance.levels import Profile
    from conformance.mutants import AT_RESOLUTION, MUTANTS
    from conformance.resolve import ResolutionError, resolve_targets
    from conformance.runner import run_check

    profile = Profile.for_level(level, seed=seed)
    results: list[MutantResult] = []
    with tempfile.TemporaryDirectory(prefix="conformance-mutants-") as tmp:
        for i, mutant in enumerate(MUTANTS):
            try:
                (target,) = resolve_targets(mutant.kind, [mutant.path], [], [])
            except ResolutionError as exc:
                caught = mutant.caught_by == AT_RESOLUTION
                results.append(MutantResult(mutant.path, mutant.caught_by, caught, str(exc)))
                continue
            if mutant.caught_by == AT_RESOLUTION:
                results.append(
                    MutantResult(mutant.path, mutant.caught_by, False, "resolution accepted it")
                )
                continue
            outcome = run_check(
                get_check(mutant.caught_by),
                target,
                workdir=Path(tmp) / f"{i:03d}-{mutant.name}",
                profile=profile,
            )
            first = outcome.reason.splitlines()[0] if outcome.reason else ""
            results.append(
                MutantResult(
                    mutant.path,
                    mutant.caught_by,
                    outcome.status is Status.FAIL,
                    f"{outcome.status.value}: {first}",
                )
            )
    return results


def score_line(mutants: Sequence[MutantResult], false_failures: int, correct: int) -> str:
    """The suite's statement about itself."""
    caught = sum(1 for m in mutants if m.caught)
    return (
        f"{caught}/{len(mutants)} mutants caught, {false_failures} false failures on "
        f"{correct} correct components"
    )


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def commands(level: str = "standard") -> list[str]:
    """One shell command per built-in target (what ``./scripts/test`` may run)."""
    return [f"pytest conformance --sink {s} --conformance-level {level}" for s in BUILTIN_SINKS] + [
        f"pytest conformance --source {s} --conformance-level {level}" for s in BUILTIN_SOURCES
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the self-test (see the module docstring); returns the process exit code: 0 only
    when every correct component is CONFORMANT and every mutant is caught."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--list" in args:
        print("\n".join(commands(_option(args, "--conformance-level") or "standard")))
        return 0
    from conformance.__main__ import main as run
    from conformance.mutants import REFERENCE_SINKS, REFERENCE_SOURCES
    from conformance.report import CONFORMANT

    with tempfile.TemporaryDirectory(prefix="conformance-selftest-") as tmp:
        report = _option(args, "--conformance-report")
        if report is None:
            report = str(Path(tmp) / "report.json")
            args += ["--conformance-report", report]
        code = run(builtin_args(references=True) + args)
        try:
            document = json.loads(Path(report).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print("selftest: the suite produced no report; no score", file=sys.stderr)
            return code or 1
    verdicts = {t["target"]: t for t in document.get("targets", [])}
    correct = BUILTIN_SINKS + BUILTIN_SOURCES + REFERENCE_SINKS + REFERENCE_SOURCES
    wrong = [name for name in correct if verdicts.get(name, {}).get("verdict") != CONFORMANT]
    seed = _option(args, "--conformance-seed")
    mutants = run_mutants(
        _option(args, "--conformance-level") or "standard", int(seed) if seed else None
    )
    for name in wrong:
        found = verdicts.get(name)
        why = (
            f"{found['verdict']} ({', '.join(found.get('must_failures', []))})"
            if found
            else "not in the report"
        )
        print(f"selftest: expected CONFORMANT: {name} is {why}")
    for m in mutants:
        if not m.caught:
            print(f"selftest: mutant not caught: {m.path} by {m.caught_by} — {m.detail}")
    print(score_line(mutants, len(wrong), len(correct)))
    if wrong or not all(m.caught for m in mutants):
        return code or 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
