"""Run the conformance suite against every built-in sink and source (release validation).

``python -m conformance.selftest [pytest options]`` runs one pytest session over all of
them and exits non-zero on any MUST failure; ``--list`` prints the equivalent per-target
commands (``pytest conformance --sink agora.MemorySink`` …) instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["BUILTIN_SINKS", "BUILTIN_SOURCES", "builtin_args", "commands", "main"]

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


def builtin_args() -> list[str]:
    """``--sink X`` / ``--source Y`` for every built-in component."""
    args: list[str] = []
    for sink in BUILTIN_SINKS:
        args += ["--sink", sink]
    for source in BUILTIN_SOURCES:
        args += ["--source", source]
    return args


def commands(level: str = "standard") -> list[str]:
    """One shell command per built-in target (what ``./scripts/test`` may run)."""
    return [f"pytest conformance --sink {s} --conformance-level {level}" for s in BUILTIN_SINKS] + [
        f"pytest conformance --source {s} --conformance-level {level}" for s in BUILTIN_SOURCES
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--list" in args:
        level = "standard"
        if "--conformance-level" in args:
            level = args[args.index("--conformance-level") + 1]
        print("\n".join(commands(level)))
        return 0
    from conformance.__main__ import main as run

    return run(builtin_args() + args)


if __name__ == "__main__":
    raise SystemExit(main())
