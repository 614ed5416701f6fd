"""The suite tested from the outside, as users run it: every built-in sink and source is
conformant, every mutant is caught by the check designed for it, usage errors are clear,
and the plugin stays out of the way of runs that name no target.

Runs are batched (many targets per pytest session, ``--conformance-level smoke``) so the
whole file takes well under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conformance.catalogue import Level
from conformance.mutants import AT_RESOLUTION, MUTANTS, REFERENCE_SINKS, REFERENCE_SOURCES
from conformance.report import CONFORMANT, CONFORMANT_BLACK_BOX, NON_CONFORMANT, PARTIAL
from conformance.selftest import BUILTIN_SINKS, BUILTIN_SOURCES

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["-q", "-p", "no:cacheprovider", "--conformance-level", "smoke"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("CONFORMANCE_SHORT_OPTIONS", None)
    return env


def _run(
    args: list[str], cwd: Path = ROOT, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _report(path: Path) -> dict[str, dict[str, Any]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return {t["target"]: t for t in document["targets"]}


def _statuses(target: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in target["checks"]}


@pytest.mark.timeout(180)
def test_every_builtin_sink_and_source_is_conformant(tmp_path: Path, no_orphans: None) -> None:
    report = tmp_path / "builtins.json"
    proc = _run(["-m", "conformance.selftest", *QUIET, "--conformance-report", str(report)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    targets = _report(report)
    references = REFERENCE_SINKS + REFERENCE_SOURCES
    assert set(targets) == set(BUILTIN_SINKS + BUILTIN_SOURCES + references)
    for name, target in targets.items():
        assert target["must_failures"] == [], (name, target["must_failures"])
        assert target["verdict"] == CONFORMANT, name
        assert target["counts"]["must_pass"] >= 3, name  # a DLQ sink has 4 checks
        assert target["checks_run"] == target["checks_total"], name
    # The terminal table ends each target with its verdict; the run ends with its score.
    assert "conformance: sink agora.CsvSink" in proc.stdout
    assert (
        f"{len(MUTANTS)}/{len(MUTANTS)} mutants caught, 0 false failures on "
        f"{len(targets)} correct components"
    ) in proc.stdout
    # A sink that discards by design is not passed on integrity; it is unsupported there.
    assert _statuses(targets["agora.NullSink"])["SNK-WRITE-07"] == "unsupported"


def _mutant_run(
    kind: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    report = tmp_path / f"{kind}-mutants.json"
    references = REFERENCE_SINKS if kind == "sink" else REFERENCE_SOURCES
    args = []
    checked = [m.path for m in MUTANTS if m.kind == kind and m.caught_by != AT_RESOLUTION]
    for path in checked + list(references):
        args += [f"--{kind}", path]
    proc = _run(["-m", "conformance", *args, *QUIET, "--conformance-report", str(report)])
    return proc, _report(report)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["sink", "source"])
def test_every_mutant_is_caught_and_references_pass(
    kind: str, tmp_path: Path, no_orphans: None
) -> None:
    proc, targets = _mutant_run(kind, tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # MUST failures fail
    references = REFERENCE_SINKS if kind == "sink" else REFERENCE_SOURCES
    for path in references:
        assert targets[path]["verdict"] == CONFORMANT, (path, targets[path]["must_failures"])
    for mutant in (m for m in MUTANTS if m.kind == kind and m.caught_by != AT_RESOLUTION):
        target = targets[mutant.path]
        statuses = _statuses(target)
        assert statuses[mutant.caught_by] == "fail", (mutant.name, mutant.caught_by, statuses)
        if mutant.level is Level.MUST:
            assert target["verdict"] == NON_CONFORMANT, mutant.name
            assert mutant.caught_by in target["must_failures"], mutant.name
        else:  # a SHOULD-only mutant is reported, but stays conformant
            assert target["verdict"] == CONFORMANT and not target["must_failures"], mutant.name


@pytest.mark.timeout(120)
def test_strict_mode_makes_a_should_failure_non_conformant(
    tmp_path: Path, no_orphans: None
) -> None:
    report = tmp_path / "strict.json"
    proc = _run(
        [
            "-m",
            "conformance",
            "--sink",
            "conformance.mutants.sinks.MisuseErrorNamesNoSink",
            "--conformance-strict",
            *QUIET,
            "--conformance-report",
            str(report),
        ]
    )
    assert proc.returncode == 1
    (target,) = _report(report).values()
    assert target["verdict"] == NON_CONFORMANT and target["must_failures"] == ["SNK-LIFE-03"]


@pytest.mark.timeout(120)
def test_a_subset_run_gives_no_verdict(tmp_path: Path, no_orphans: None) -> None:
    report = tmp_path / "partial.json"
    proc = _run(
        [
            "-m",
            "conformance",
            "--sink",
            "conformance.mutants.sinks.WriteAfterCloseAccepted",
            "-k",
            "LIFE-13 or LIFE-01",
            *QUIET,
            "--conformance-report",
            str(report),
        ]
    )
    (target,) = _report(report).values()
    assert target["verdict"] == PARTIAL and target["must_failures"] == ["SNK-LIFE-13"]
    assert f"partial run: 2 of {target['checks_total']} checks — no verdict" in proc.stdout
    assert "verdict: NON-CONFORMANT" not in proc.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sink", "no_such_pkg.Sink"], "cannot import 'no_such_pkg.Sink'"),
        (["--sink", "json.JSONDecoder"], "does not subclass agora.BaseSink"),
        (["--sink", "cf_user_mod.NeedsPath"], "NeedsPath() needs constructor arguments (path)"),
        (["--source", "agora:MemorySink"], "does not subclass agora.BaseSource"),
        (["--sink", "agora.MemorySink", "-k", "no-check-matches-this"], "no checks were collected"),
        (
            ["--sink", "conformance.mutants.sinks.DropsEverySecondWrite"],
            "built a conformance.mutants.reference.JsonFileSink, not a "
            "conformance.mutants.sinks.DropsEverySecondWrite",
        ),
    ],
)
def test_usage_errors_are_one_clear_message(
    args: list[str], message: str, tmp_path: Path, no_orphans: None
) -> None:
    _user_module(tmp_path)
    proc = _run(["-m", "conformance", *args, *QUIET], cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def _user_module(tmp_path: Path) -> None:
    (tmp_path / "cf_user_mod.py").write_text(
        textwrap.dedent("""
        from agora import BaseSink

        class NeedsPath(BaseSink):
            def __init__(self, path):
                self.path = path

            async def write(self, record):
                self._check_usable("write")

        def make(tmp):
            return NeedsPath(tmp / "out")
    """)
    )


@pytest.mark.timeout(120)
def test_a_factory_without_read_back_is_conformant_only_as_a_black_box(
    tmp_path: Path, no_orphans: None
) -> None:
    _user_module(tmp_path)
    report = tmp_path / "bb.json"
    proc = _run(
        [
            "-m",
            "conformance",
            "--sink",
            "cf_user_mod.NeedsPath",
            "--sink-factory",
            "cf_user_mod:make",
            *QUIET,
            "--conformance-report",
            str(report),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    (target,) = _report(report).values()
    assert target["verdict"] == CONFORMANT_BLACK_BOX
    statuses = _statuses(target)
    assert statuses["SNK-LIFE-05"] == "not-verifiable" and statuses["SNK-LIFE-04"] == "pass"
    assert "verdict: CONFORMANT (black-box)" in proc.stdout


@pytest.mark.timeout(120)
def test_invocations_from_a_checkout_with_pyargs_and_through_the_api(
    tmp_path: Path, no_orphans: None
) -> None:
    # From the repository root, `pytest conformance --sink …` (the checkout conftest loads
    # the plugin; the repo's own config, filterwarnings=error included, applies).
    proc = _run(
        [
            "-m",
            "pytest",
            "conformance",
            "--sink",
            "agora.MemorySink",
            "-k",
            "DECL",
            "-q",
            "-p",
            "no:cacheprovider",
            "--conformance-report",
            str(tmp_path / "a.json"),
        ]
    )
    assert proc.returncode == 0 and "partial run: 5 of 43 checks" in proc.stdout, proc.stdout
    # From elsewhere, the installed package by name (the entry point is `-p` here).
    proc = _run(
        [
            "-m",
            "pytest",
            "-p",
            "conformance.plugin",
            "--pyargs",
            "conformance",
            "--source",
            "agora.IterableSource",
            "-k",
            "CKPT-01",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "partial run: 1 of" in proc.stdout, proc.stdout[-2000:]
    assert (tmp_path / ".conformance" / "report.json").exists()
    # A SinkConformance subclass in a user's own test module gets the same summary.
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent("""
        from conformance import SinkConformance
        from conformance.mutants.reference import ArrowJsonFileSink

        class TestMine(SinkConformance):
            sink = ArrowJsonFileSink
            conformance_level = "smoke"
    """)
    )
    proc = _run(
        [
            "-m",
            "pytest",
            "-p",
            "conformance.plugin",
            "test_mine.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "conformance: sink conformance.mutants.reference.ArrowJsonFileSink" in proc.stdout
    assert "verdict: CONFORMANT" in proc.stdout


@pytest.mark.timeout(120)
def test_the_plugin_is_inert_without_a_target(tmp_path: Path, no_orphans: None) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    proc = _run(
        [
            "-m",
            "pytest",
            "-p",
            "conformance.plugin",
            "test_plain.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout
    assert "conformance" not in proc.stdout
    assert not (tmp_path / ".conformance").exists()
    # Loading the plugin does not import the checks, the runtime or pyarrow.
    probe = _run(
        [
            "-c",
            "import sys, conformance.plugin; print(sorted(m for m in ('agora', 'pyarrow', "
            "'conformance.checks') if m in sys.modules))",
        ]
    )
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


@pytest.mark.timeout(120)
def test_programmatic_run_returns_the_report(no_orphans: None) -> None:
    from conformance import run

    document = run(
        sinks=["agora.MemorySink"], level="smoke", extra_args=["-k", "LIFE"], cwd=ROOT, timeout=100
    )
    assert document["exit_code"] == 0 and document["verdict"] == PARTIAL
    (target,) = document["targets"]
    assert {c["id"] for c in target["checks"]} >= {"SNK-LIFE-04", "SNK-LIFE-05"}
    with pytest.raises(RuntimeError, match="cannot import"):
        run(sinks=["no_such_pkg.Sink"], level="smoke", cwd=ROOT, timeout=100)
