"""Agora's conformance suite for third-party sources and sinks (contract §11).

Command line (from a checkout, installed, or as a module)::

    pytest conformance --sink mypkg.sinks.MySink            # or pkg.mod:Class
    pytest --pyargs conformance --source mypkg.sources:MySource
    python -m conformance --sink mypkg.sinks.MySink --conformance-level thorough

Python API — subclass in your own tests, with a harness for construction and an
independent read-back (or seeding, for sources)::

    from conformance import SinkConformance, SinkHarness

    class MyHarness(SinkHarness):
        target = MySink
        def build(self, ns): return MySink(ns.path / "out.db")
        def read_back(self, ns): return my_direct_reader(ns.path / "out.db")

    class TestMySink(SinkConformance):
        harness = MyHarness

Module map: ``catalogue`` (Check, levels, statuses, registration), ``checks/`` (the
checks, one module per group), ``harness`` (SinkHarness, DLQSinkHarness, SourceHarness,
Namespace),
``builtin_harnesses`` / ``dlq_harnesses`` (Agora's built-ins), ``resolve`` (command-line
targets, and the check that a harness builds its target), ``runner``
(one check → one outcome), ``api`` (the pytest driver classes), ``plugin`` (options,
collection, summary), ``report`` (verdict, table, JSON), ``strategies`` (Hypothesis
strategies for Arrow data), ``mutants/`` (broken components that prove the checks),
``selftest`` (every built-in and reference, every mutant: the mutation score). The
suite imports Agora only through its public facade.

PYTEST_DONT_REWRITE: checks raise their own precise AssertionErrors; no rewriting needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Check",
    "DLQSinkHarness",
    "Level",
    "Namespace",
    "NotVerifiable",
    "Outcome",
    "Profile",
    "SinkConformance",
    "SinkHarness",
    "SourceConformance",
    "SourceHarness",
    "Status",
    "Target",
    "Unsupported",
    "all_checks",
    "get_check",
    "run",
    "run_check",
]

# Resolved on first use, so that loading the pytest plugin (which imports this package)
# does not import the checks, the runtime and pyarrow into unrelated pytest runs.
_LAZY = {
    "Check": "conformance.catalogue",
    "Level": "conformance.catalogue",
    "NotVerifiable": "conformance.catalogue",
    "Status": "conformance.catalogue",
    "Unsupported": "conformance.catalogue",
    "all_checks": "conformance.catalogue",
    "get_check": "conformance.catalogue",
    "Namespace": "conformance.harness",
    "DLQSinkHarness": "conformance.harness",
    "SinkHarness": "conformance.harness",
    "SourceHarness": "conformance.harness",
    "Outcome": "conformance.runner",
    "run_check": "conformance.runner",
    "Profile": "conformance.levels",
    "Target": "conformance.targets",
    "SinkConformance": "conformance.api",
    "SourceConformance": "conformance.api",
    "run": "conformance.programmatic",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
