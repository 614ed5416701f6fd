"""``python -m conformance --sink pkg.mod.Class [pytest options]``: run the suite with pytest."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["HELP", "main"]

HELP = """\
usage: python -m conformance (--sink PKG.MOD:CLASS | --source PKG.MOD:CLASS) [options]
       agora conformance ...   (the same)

Check a third-party sink or source against Agora's contract and print a verdict:
CONFORMANT, CONFORMANT (black-box) (some checks not verifiable without a harness hook),
or NON-CONFORMANT. Only a full run gives a verdict; -k / --deselect / -x runs say
"partial run: N of M checks — no verdict".

targets (repeatable; pkg.mod.Class or pkg.mod:Class):
  --sink, --conformance-sink CLASS        a BaseSink subclass (DLQ sinks too)
  --source, --conformance-source CLASS    a BaseSource subclass
  --sink-factory / --source-factory FUNC  a callable returning a fresh component
                                          (no argument, or one: a temp dir Path)
  --sink-harness / --source-harness H     a SinkHarness / DLQSinkHarness / SourceHarness:
                                          builds the component, reads back / seeds data

options:
  --conformance-level smoke|standard|thorough
                                          Hypothesis budgets 10/10, 50/30 (default),
                                          500/100 examples/steps
  --conformance-strict                    SHOULD failures fail the run and the verdict
  --conformance-report PATH               JSON report (default .conformance/report.json)
  --conformance-seed N                    replay a reported Hypothesis seed
  -k EXPR, -x, -q, -v, ...                pytest's options work as usual

exit codes: 0 no MUST failure, 1 a check failed, 4 usage error (e.g. unresolvable
target, or a harness that builds another class than the target).

example:
  python -m conformance --sink mypkg.sinks:MySink --sink-harness tests.harness:MyHarness

Guide: conformance/README.md (every check, its ID and level). pytest's full help:
  python -m conformance --pytest-help
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run pytest over the installed suite with ``argv`` (conformance and pytest options).

    Returns pytest's exit code: 0 conformant (SHOULD gaps are reported, not failed unless
    ``--conformance-strict``), 1 a check failed, 4 a usage error (e.g. an unresolvable
    target). The verdict table is printed at the end; the JSON report goes to
    ``.conformance/report.json`` unless ``--conformance-report`` says otherwise.
    ``-h`` / ``--help`` prints the suite's own short help; ``--pytest-help`` pytest's.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(HELP, end="")
        return 0
    args = ["--help" if a == "--pytest-help" else a for a in args]
    import pytest

    suite = str(Path(__file__).resolve().parent)
    # Assertion rewriting is off unless asked for: pytest marks every package of a
    # distribution that ships a pytest11 plugin (here: agora and conformance) for
    # rewriting, and whatever was imported before pytest.main — agora itself, when started
    # as `agora conformance` — then triggers PytestAssertRewriteWarning. The checks build
    # their own assertion messages, so rewriting adds nothing.
    assert_mode = [] if any(a.startswith("--assert") for a in args) else ["--assert=plain"]
    return int(pytest.main([suite, "-p", "conformance.plugin", *assert_mode, *args]))


if __name__ == "__main__":
    raise SystemExit(main())
