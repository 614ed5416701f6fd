"""The pytest plugin (entry point ``conformance.plugin``): options, one-time target
resolution, collection of the suite modules, the summary table with a verdict, and the
JSON report.

It is inert unless a target is given (``--sink`` / ``--source`` / a factory / a harness):
otherwise it only registers its options, and summarises ``SinkConformance`` /
``SourceConformance`` subclasses if a run happens to contain some.

PYTEST_DONT_REWRITE: checks raise their own precise AssertionErrors; no rewriting needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.levels import LEVELS

# Everything else (the checks, the runtime, pyarrow) is imported lazily inside the hooks:
# the plugin is auto-loaded into every pytest run of an environment that has Agora
# installed, and must cost nothing there unless a target is given.

__all__ = ["COLLECTOR_KEY", "SUITE_DIR", "TARGETS_KEY"]

SUITE_DIR = Path(__file__).resolve().parent
_SUITE_MODULES = {"cf_sink.py": "sink", "cf_source.py": "source"}
DEFAULT_REPORT = Path(".conformance") / "report.json"
#: Per-check time limits by level (pytest-timeout, when installed): a thorough run may
#: legitimately take minutes on one stateful check.
_TIMEOUTS = {"smoke": 300, "standard": 900, "thorough": 3600}

TARGETS_KEY = pytest.StashKey[dict[str, list[Any]]]()  # kind -> [Target]
COLLECTOR_KEY = pytest.StashKey[Any]()  # ReportCollector
_CASES_KEY = pytest.StashKey[dict[str, Any]]()  # nodeid -> Case
_TARGET_OPTIONS = (
    "conformance_sink",
    "conformance_source",
    "conformance_sink_factory",
    "conformance_source_factory",
    "conformance_sink_harness",
    "conformance_source_harness",
)


def _short_options() -> bool:
    # --sink / --source may collide with a project's own options; CONFORMANCE_SHORT_OPTIONS=0
    # keeps only the --conformance-* spellings (read before any conftest can add options).
    return os.environ.get("CONFORMANCE_SHORT_OPTIONS", "1").strip().lower() not in (
        "0",
        "false",
        "no",
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "conformance", "Agora conformance suite (pytest conformance --sink pkg.mod.Class)"
    )
    short = _short_options()
    for kind in ("sink", "source"):
        names = [f"--conformance-{kind}"] + ([f"--{kind}"] if short else [])
        group.addoption(
            *names,
            action="append",
            default=[],
            dest=f"conformance_{kind}",
            metavar="PKG.MOD:CLASS",
            help=f"{kind} class to check (pkg.mod.Class or pkg.mod:Class); repeatable",
        )
        group.addoption(
            f"--{kind}-factory",
            f"--conformance-{kind}-factory",
            action="append",
            default=[],
            dest=f"conformance_{kind}_factory",
            metavar="PKG.MOD:FUNC",
            help=f"callable returning a fresh {kind}: no argument, or one (a fresh temp dir)",
        )
        group.addoption(
            f"--{kind}-harness",
            f"--conformance-{kind}-harness",
            action="append",
            default=[],
            dest=f"conformance_{kind}_harness",
            metavar="PKG.MOD:HARNESS",
            help=f"conformance.{kind.capitalize()}Harness subclass: builds the {kind}, reads "
            f"back / seeds data",
        )
    group.addoption(
        "--conformance-level",
        choices=sorted(LEVELS),
        default=None,
        dest="conformance_level",
        help="Hypothesis examples/steps: smoke 10/10, standard 50/30 (default), thorough 500/100",
    )
    group.addoption(
        "--conformance-report",
        default=None,
        dest="conformance_report",
        metavar="PATH",
        help=f"write the JSON report here (default with a target: {DEFAULT_REPORT})",
    )
    group.addoption(
        "--conformance-strict",
        action="store_true",
        default=False,
        dest="conformance_strict",
        help="SHOULD failures fail the run (and the verdict)",
    )
    group.addoption(
        "--conformance-seed",
        type=int,
        default=None,
        dest="conformance_seed",
        help="Hypothesis seed (replays a reported failure; default: random, derandomized under CI)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    # Installed use from any folder: a bare `conformance` that is not a path here means the
    # installed suite directory (the rootdir and ini file still come from the user's cwd).
    for i, arg in enumerate(args):
        if arg == "conformance" and not Path(arg).exists():
            args[i] = str(SUITE_DIR)


def _active(config: pytest.Config) -> bool:
    return any(config.getoption(name, None) for name in _TARGET_OPTIONS)


def pytest_configure(config: pytest.Config) -> None:
    from conformance.report import ReportCollector

    config.stash[COLLECTOR_KEY] = ReportCollector(
        strict=bool(config.getoption("conformance_strict", False))
    )
    config.stash[_CASES_KEY] = {}
    config.pluginmanager.register(_Reporter(config), "conformance-reporter")
    if not _active(config):
        return
    # Resolve user modules from where pytest was started, as `python -m` would.
    for entry in (str(config.invocation_params.dir), str(config.rootpath)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from conformance.api import profile_for, resolve_from_options

    config.stash[TARGETS_KEY] = {
        kind: resolve_from_options(config, kind) for kind in ("sink", "source")
    }
    profile_for(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    kind = _SUITE_MODULES.get(file_path.name)
    if kind is None or file_path.resolve().parent != SUITE_DIR:
        return None
    if parent.session.isinitpath(file_path):
        return None  # named explicitly: pytest's own collector takes it
    if not parent.config.stash.get(TARGETS_KEY, {}).get(kind):
        return None
    return pytest.Module.from_parent(parent, path=file_path)


def _case(item: pytest.Item) -> Any:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("conformance_case") if callspec is not None else None
    if case is None:
        return None
    from conformance.api import Case

    return case if isinstance(case, Case) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cases = config.stash[_CASES_KEY]
    if not any(_case(item) is not None for item in items):
        return
    from conformance.api import profile_for

    timeout = None
    if config.pluginmanager.hasplugin("timeout"):
        configured = config.getoption("timeout", None) or 0
        timeout = max(float(configured), _TIMEOUTS[profile_for(config).level])
    for item in items:
        case = _case(item)
        if case is None:
            continue
        cases[item.nodeid] = case
        if timeout is not None:
            item.add_marker(pytest.mark.timeout(timeout))


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not _active(config):
        return
    if not any(_case(item) is not None for item in session.items):
        targets = [t.label for ts in config.stash.get(TARGETS_KEY, {}).values() for t in ts]
        raise pytest.UsageError(
            f"conformance: no checks were collected for {', '.join(targets)}. Put the suite "
            f"among the paths — `pytest conformance --sink …` from a checkout, `pytest "
            f"--pyargs conformance --sink …` when installed, or `python -m conformance --sink "
            f"…` — and check that -k / -m do not deselect every check. (Zero checks is never "
            f"a pass.)"
        )


class _Reporter:
    """Per-session hooks that need the config: collects every conformance outcome."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        collector = self.config.stash[COLLECTOR_KEY]
        for name, value in report.user_properties:
            if name == "conformance" and report.when == "call" and isinstance(value, dict):
                collector.add(value["target"], value["record"])
                return
        if report.failed and report.when in ("setup", "teardown"):
            case = self.config.stash[_CASES_KEY].get(report.nodeid)
            if case is not None:
                from conformance.catalogue import Status

                record = case.check.to_dict()
                last = str(report.longrepr).strip().splitlines()[-1:] or [""]
                record.update(
                    target=case.target.label,
                    status=Status.ERROR.value,
                    reason=f"pytest {report.when} failed: {last[0]}",
                    duration_s=round(report.duration, 4),
                )
                collector.add(case.target.to_dict(), record)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    targets = config.stash.get(TARGETS_KEY, None)
    if not targets:
        return None
    from conformance.api import profile_for

    profile = profile_for(config)
    seed = "derandomized" if profile.derandomize else f"seed {profile.seed}"
    lines = [
        f"conformance: level {profile.level} ({profile.max_examples} examples, "
        f"{profile.step_count} steps), {seed}"
    ]
    for kind_targets in targets.values():
        for t in kind_targets:
            lines.append(
                f"conformance: {t.kind} {t.label} — harness {t.harness.describe()} — "
                f"from {t.origin}"
            )
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    collector = config.stash.get(COLLECTOR_KEY, None)
    if not collector:
        return
    from conformance.api import profile_for
    from conformance.report import overall_verdict, render_summary, write_json_report

    profile = profile_for(config)
    meta = {**profile.to_dict(), "strict": collector.strict}
    terminalreporter.section("conformance")
    for summary in collector.summaries:
        for line in render_summary(summary, meta):
            terminalreporter.write_line(line)
    summaries = collector.summaries
    if len(summaries) > 1:
        terminalreporter.write_line(
            f"overall verdict: {overall_verdict(summaries)} ({len(summaries)} targets)"
        )
    option = config.getoption("conformance_report", None)
    if option or _active(config):
        path = Path(option) if option else DEFAULT_REPORT
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        write_json_report(path, summaries, meta)
        terminalreporter.write_line(f"report: {path}")
