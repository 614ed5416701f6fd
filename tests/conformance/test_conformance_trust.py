"""What makes a CONFORMANT verdict trustworthy: acknowledged-then-lost writes, persisted data
changed by the caller, foreign checkpoints, harnesses that build the wrong class, the
suite's own probe records, per-check working folders, partial runs, missing hooks, DLQ
sinks, the mutation score, and the command's own help."""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agora
from conformance.__main__ import HELP
from conformance.__main__ import main as conformance_main
from conformance._agora import CheckpointError
from conformance.catalogue import Status, get_check
from conformance.checks._context import SinkContext
from conformance.checks._sink_ops import ExplodingRecord
from conformance.harness import Namespace, SinkHarness
from conformance.levels import Profile
from conformance.mutants import MUTANTS
from conformance.mutants.reference import (
    DeepCopyMemorySink,
    JsonFileSink,
    JsonFileSource,
    ReferenceSinkHarness,
    ReferenceSourceHarness,
)
from conformance.mutants.sinks import DropsEverySecondWriteOwnHarness
from conformance.programmatic import dotted_name, run
from conformance.report import PARTIAL, ReportCollector, render_summary
from conformance.resolve import ResolutionError, make_harness, resolve_targets, validate_target
from conformance.runner import Outcome, run_check
from conformance.selftest import run_mutants, score_line
from conformance.targets import Target

ROOT = Path(__file__).resolve().parents[2]


def _resolve(kind: str, path: str) -> Target:
    (target,) = resolve_targets(kind, [path], [], [])
    return target


def _run(check_id: str, target: Target, tmp_path: Path) -> Outcome:
    return run_check(
        get_check(check_id), target, workdir=tmp_path, profile=Profile.for_level("smoke", seed=3)
    )


# -- the new MUST checks, each against its mutant and its reference ----------------------


@pytest.mark.parametrize(
    ("check_id", "mutant", "reference"),
    [
        ("SNK-LIFE-13", "conformance.mutants.sinks.AcceptsWritesBeforeOpen", "JsonFileSink"),
        ("SNK-LIFE-13", "conformance.mutants.sinks.WriteAfterCloseAccepted", "JsonFileSink"),
        ("SNK-WRITE-09", "conformance.mutants.sinks.KeepsCallerList", "JsonFileSink"),
        (
            "SRC-CKPT-07",
            "conformance.mutants.sources.RestartsOnForeignCheckpoint",
            "JsonFileSource",
        ),
        ("SRC-CKPT-10", "conformance.mutants.sources.RestartsOnOtherInput", "JsonFileSource"),
    ],
)
def test_each_new_must_check_fails_its_mutant_and_passes_the_reference(
    check_id: str, mutant: str, reference: str, tmp_path: Path
) -> None:
    kind = "sink" if check_id.startswith("SNK") else "source"
    caught = _run(check_id, _resolve(kind, mutant), tmp_path / "mutant")
    assert caught.status is Status.FAIL, caught.reason
    assert get_check(check_id).level.value == "MUST"
    passed = _run(
        check_id, _resolve(kind, f"conformance.mutants.reference.{reference}"), tmp_path / "ref"
    )
    assert passed.status is Status.PASS, passed.reason


def test_lost_acknowledged_writes_are_named_in_the_reason(tmp_path: Path) -> None:
    outcome = _run(
        "SNK-LIFE-13", _resolve("sink", "conformance.mutants.sinks.AcceptsWritesBeforeOpen"),
        tmp_path,
    )
    assert "acknowledged record(s) were never persisted" in outcome.reason
    assert "write() before open() returned without error" in outcome.reason


def test_a_foreign_input_checkpoint_is_refused_by_the_reference_but_not_the_mutant(
    tmp_path: Path,
) -> None:
    # The other-input mutant still refuses junk values: only SRC-CKPT-10 catches it.
    mutant = _resolve("source", "conformance.mutants.sources.RestartsOnOtherInput")
    assert _run("SRC-CKPT-07", mutant, tmp_path / "a").status is Status.PASS
    outcome = _run("SRC-CKPT-10", mutant, tmp_path / "b")
    assert "accepted it and read on" in outcome.reason


def test_an_in_memory_iterable_has_no_input_identity_so_the_check_is_unsupported(
    tmp_path: Path,
) -> None:
    outcome = _run("SRC-CKPT-10", _resolve("source", "agora.IterableSource"), tmp_path)
    assert outcome.status is Status.UNSUPPORTED and "input-identity" in outcome.reason


# -- harness validation -------------------------------------------------------------------


def test_an_inherited_harness_that_builds_the_parent_is_a_usage_error() -> None:
    with pytest.raises(ResolutionError) as info:
        resolve_targets("sink", ["conformance.mutants.sinks.DropsEverySecondWrite"], [], [])
    message = str(info.value)
    assert "built a conformance.mutants.reference.JsonFileSink" in message
    assert "not a conformance.mutants.sinks.DropsEverySecondWrite" in message
    assert "self.target(...)" in message


def test_an_inherited_harness_building_self_target_checks_the_subclass(tmp_path: Path) -> None:
    target = _resolve("sink", "conformance.mutants.sinks.DropsEverySecondWriteOwnHarness")
    assert target.harness.target is DropsEverySecondWriteOwnHarness
    outcome = _run("SNK-WRITE-07", target, tmp_path)
    assert outcome.status is Status.FAIL and "missing" in outcome.reason


def test_a_harness_instance_is_rebound_to_a_subclass_without_changing_the_original() -> None:
    parent = ReferenceSinkHarness(JsonFileSink)
    child = make_harness("sink", parent, DropsEverySecondWriteOwnHarness)
    assert child.target is DropsEverySecondWriteOwnHarness and parent.target is JsonFileSink


def test_a_mismatched_harness_inside_a_check_is_an_error_not_a_pass(tmp_path: Path) -> None:
    target = Target(
        "sink", "sub", ReferenceSinkHarness(JsonFileSink), "test", DropsEverySecondWriteOwnHarness
    )
    outcome = _run("SNK-LIFE-01", target, tmp_path)
    assert outcome.status is Status.ERROR and "harness mismatch" in outcome.reason


# -- the suite's own probe data and comparisons ------------------------------------------


def test_a_correct_deep_copying_rows_only_sink_passes_the_failed_write_check(
    tmp_path: Path,
) -> None:
    target = _resolve("sink", "conformance.mutants.reference.DeepCopyMemorySink")
    assert isinstance(target.harness.build(Namespace("n", tmp_path)), DeepCopyMemorySink)
    outcome = _run("SNK-LIFE-09", target, tmp_path)
    assert outcome.status is Status.PASS, outcome.reason


def test_comparisons_never_evaluate_probe_records_or_raise_on_opaque_ones(
    tmp_path: Path,
) -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    ctx = SinkContext(_resolve("sink", "agora.MemorySink"), tmp_path, Profile.for_level("smoke"))
    probe, hostile = ctx.canon([ExplodingRecord(), Hostile()])
    assert probe == ("<conformance probe>", "ExplodingRecord")
    assert hostile[0] == "<opaque record>" and "repr raised RuntimeError" in hostile[2]


# -- isolation ----------------------------------------------------------------------------


class _RelativePathSink(agora.BaseSink):
    """Writes to ``./mysink.db`` relative to the working directory (a common default)."""

    async def open(self) -> None:
        await super().open()
        Path("mysink.db").write_text("opened\n", encoding="utf-8")

    async def write(self, record: Any) -> None:
        self._check_usable("write")


def test_every_check_runs_in_its_own_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.chdir(user)
    target = Target("sink", "rel", SinkHarness(_RelativePathSink), "test", _RelativePathSink)
    outcome = _run("SNK-LIFE-01", target, tmp_path / "check")
    assert outcome.status is Status.PASS
    assert Path.cwd() == user and not (user / "mysink.db").exists()
    assert (tmp_path / "check" / "mysink.db").exists()


# -- honest reporting ---------------------------------------------------------------------


def _record(check_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": check_id,
        "title": "t",
        "group": check_id.split("-")[1],
        "level": "MUST",
        "status": status,
        "reason": "why",
        **extra,
    }


def test_a_partial_run_gives_no_verdict() -> None:
    collector = ReportCollector()
    target = {"kind": "sink", "target": "x.Y", "harness": "h", "checks_total": 43}
    collector.add(target, _record("SNK-LIFE-01", "pass"))
    collector.add(target, _record("SNK-LIFE-04", "fail"))
    (summary,) = collector.summaries
    assert summary.verdict == PARTIAL and summary.to_dict()["checks_run"] == 2
    lines = render_summary(summary, {"level": "smoke", "seed": 1})
    assert "  partial run: 2 of 43 checks — no verdict" in lines
    assert not any("verdict: CONFORMANT" in line for line in lines)
    assert any("SNK-LIFE-04" in line for line in lines)  # what it found is still shown


def test_not_verifiable_names_the_exact_missing_hook(tmp_path: Path) -> None:
    class ReadBackOnly(ReferenceSinkHarness):
        def invalid_record(self) -> Any:
            return None

    outcome = _run(
        "SNK-WRITE-04", Target("sink", "j", ReadBackOnly(JsonFileSink), "t", JsonFileSink),
        tmp_path,
    )
    assert outcome.status is Status.NOT_VERIFIABLE
    assert outcome.missing_hook == "invalid_record()" and "read_back" not in outcome.reason
    collector = ReportCollector()
    collector.add({"kind": "sink", "target": "j", "harness": "h"}, outcome.to_record())
    lines = render_summary(collector.summaries[0], {"level": "smoke", "seed": 1})
    assert "  not verifiable: the harness lacks invalid_record() (1)" in lines


# -- DLQ sinks ----------------------------------------------------------------------------


@pytest.mark.parametrize("sink", ["agora.SQLiteDLQSink", "agora.JsonLinesDLQSink"])
@pytest.mark.parametrize("check_id", ["SNK-DLQ-01", "SNK-DLQ-03", "SNK-DLQ-04"])
def test_builtin_dlq_sinks_pass_durability_permissions_and_acknowledgement(
    sink: str, check_id: str, tmp_path: Path
) -> None:
    outcome = _run(check_id, _resolve("sink", sink), tmp_path)
    assert outcome.status is Status.PASS, outcome.reason


def test_a_dlq_sink_gets_only_the_dlq_group_and_a_row_sink_never_does() -> None:
    from conformance.api import target_checks

    dlq = {c.group for c in target_checks(_resolve("sink", "agora.JsonLinesDLQSink"))}
    rows = {c.group for c in target_checks(_resolve("sink", "agora.MemorySink"))}
    assert dlq == {"DLQ"} and "DLQ" not in rows and "LIFE" in rows


@pytest.mark.parametrize(
    "check_id", ["SNK-DLQ-01", "SNK-DLQ-02", "SNK-DLQ-03", "SNK-DLQ-04"]
)
def test_the_reference_dlq_sink_passes_every_dlq_check(check_id: str, tmp_path: Path) -> None:
    target = _resolve("sink", "conformance.mutants.reference_dlq.JsonFileDLQSink")
    outcome = _run(check_id, target, tmp_path)
    assert outcome.status is Status.PASS, outcome.reason


# -- the mutation score -------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_every_mutant_is_caught_by_its_check_in_process(no_orphans: None) -> None:
    results = run_mutants("smoke", seed=5)
    assert len(results) == len(MUTANTS) >= 49
    missed = [(m.path, m.caught_by, m.detail) for m in results if not m.caught]
    assert not missed
    assert score_line(results, 0, 24) == (
        f"{len(MUTANTS)}/{len(MUTANTS)} mutants caught, 0 false failures on 24 correct components"
    )


def test_the_score_line_reports_a_miss() -> None:
    from conformance.selftest import MutantResult

    line = score_line([MutantResult("a", "X", True, ""), MutantResult("b", "Y", False, "")], 2, 5)
    assert line == "1/2 mutants caught, 2 false failures on 5 correct components"


# -- the command and the package ----------------------------------------------------------


def test_help_is_the_suites_own_and_short(capsys: pytest.CaptureFixture[str]) -> None:
    assert conformance_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out == HELP and len(out.splitlines()) < 60
    for needle in ("--sink", "--conformance-level", "smoke|standard|thorough", "example:",
                   "--pytest-help"):
        assert needle in out


@pytest.mark.timeout(120)
def test_no_assert_rewrite_warning_when_agora_is_imported_first(
    tmp_path: Path, no_orphans: None
) -> None:
    # As from a wheel: pytest marks every package of the distribution for rewriting, and
    # `agora conformance` has imported agora before pytest starts.
    script = textwrap.dedent(
        """
        import sys
        import _pytest.config as config
        config._iter_rewritable_modules = lambda files: iter(["agora", "conformance"])
        import agora.cli
        sys.exit(agora.cli.main(["conformance", "--sink", "agora.MemorySink", "-k",
                 "LIFE-01", "-q", "-p", "no:cacheprovider", "--conformance-level", "smoke",
                 "-W", "error::pytest.PytestAssertRewriteWarning"]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=100, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "PytestAssertRewriteWarning" not in proc.stdout + proc.stderr
    assert "partial run: 1 of" in proc.stdout


def test_the_package_is_typed_and_shipped_in_the_wheel() -> None:
    assert importlib.resources.files("conformance").joinpath("py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'packages = ["agora", "conformance"]' in pyproject


def test_run_accepts_classes_and_explains_what_it_cannot_import() -> None:
    assert dotted_name(DeepCopyMemorySink, "sink") == (
        "conformance.mutants.reference:DeepCopyMemorySink"
    )
    assert dotted_name("pkg.mod:X", "sink") == "pkg.mod:X"

    class Local(agora.BaseSink):
        pass

    with pytest.raises(TypeError, match="inside a function.*importable module"):
        dotted_name(Local, "sink")
    with pytest.raises(TypeError, match=r"take a list \(sinks=\[MySink\]\)"):
        run(sinks=DeepCopyMemorySink)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dotted path"):
        dotted_name(42, "sink")


def test_agora_conformance_help_is_the_suites_own(capsys: pytest.CaptureFixture[str]) -> None:
    import agora.cli

    assert agora.cli.main(["conformance", "--help"]) == 0
    assert capsys.readouterr().out == HELP


def test_the_python_api_refuses_a_harness_that_builds_another_class() -> None:
    from conformance import SinkConformance
    from conformance.mutants.sinks import HardCodedParentHarness

    class TestSub(SinkConformance):
        harness = HardCodedParentHarness(DropsEverySecondWriteOwnHarness)

    with pytest.raises(pytest.UsageError, match="built a conformance.mutants.reference"):
        TestSub().conformance_targets(config=None)  # type: ignore[arg-type]


class _WrongErrorSource(JsonFileSource):
    """Refuses a foreign checkpoint, but with the wrong exception type."""

    def position_from(self, value: Any) -> int:
        try:
            return super().position_from(value)
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None


def test_refusing_a_foreign_checkpoint_with_another_error_type_fails(tmp_path: Path) -> None:
    target = Target(
        "source", "w", ReferenceSourceHarness(_WrongErrorSource), "t", _WrongErrorSource
    )
    outcome = _run("SRC-CKPT-07", target, tmp_path)
    assert outcome.status is Status.FAIL
    assert "raised ValueError" in outcome.reason and "agora.CheckpointError" in outcome.reason


def test_a_harness_that_cannot_build_is_left_to_the_checks(tmp_path: Path) -> None:
    class Broken(ReferenceSinkHarness):
        def build(self, ns: Namespace) -> Any:
            raise OSError("backend down")

    target = validate_target(Target("sink", "b", Broken(JsonFileSink), "t", JsonFileSink))
    outcome = _run("SNK-LIFE-01", target, tmp_path)
    assert outcome.status is Status.FAIL and "backend down" in outcome.reason


def test_selftest_fails_on_a_missed_mutant_or_a_missing_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    import conformance.__main__ as entry
    import conformance.selftest as selftest
    from conformance.mutants import REFERENCE_SINKS, REFERENCE_SOURCES

    correct = (
        selftest.BUILTIN_SINKS + selftest.BUILTIN_SOURCES + REFERENCE_SINKS + REFERENCE_SOURCES
    )
    report = tmp_path / "r.json"

    def fake_suite(args: list[str]) -> int:
        targets = [{"target": name, "verdict": "CONFORMANT"} for name in correct]
        report.write_text(json.dumps({"targets": targets}), encoding="utf-8")
        return 0

    monkeypatch.setattr(entry, "main", fake_suite)
    missed = selftest.MutantResult("m.Mutant", "SNK-LIFE-01", False, "pass: ")
    monkeypatch.setattr(selftest, "run_mutants", lambda level, seed: [missed])
    assert selftest.main(["--conformance-report", str(report)]) == 1
    out = capsys.readouterr().out
    assert "mutant not caught: m.Mutant by SNK-LIFE-01" in out
    assert f"0/1 mutants caught, 0 false failures on {len(correct)} correct components" in out

    monkeypatch.setattr(entry, "main", lambda args: 0)  # a run that wrote no report
    assert selftest.main(["--conformance-report", str(tmp_path / "none.json")]) == 1
    assert "produced no report; no score" in capsys.readouterr().err
