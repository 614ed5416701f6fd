"""Unit tests of the conformance suite's machinery: the catalogue, target resolution,
the runner's statuses, the verdict, comparison forms, strategies and levels."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora import BaseSink, MemorySink
from conformance.builtin_harnesses import CsvSinkHarness, MemorySinkHarness, builtin_harness_for
from conformance.catalogue import (
    CAPABILITIES,
    Level,
    Status,
    all_checks,
    get_check,
    sink_check,
)
from conformance.data import NAN, canonical_row, canonical_value, describe_multiset_diff
from conformance.harness import Namespace, SinkHarness, call_factory, factory_arity
from conformance.levels import Profile
from conformance.media import json_cell, text_cell
from conformance.mutants import AT_RESOLUTION, MUTANTS, REFERENCE_SINKS, REFERENCE_SOURCES
from conformance.report import (
    CONFORMANT,
    CONFORMANT_BLACK_BOX,
    NON_CONFORMANT,
    ReportCollector,
    render_summary,
    write_json_report,
)
from conformance.resolve import ResolutionError, import_object, resolve_targets
from conformance.runner import run_check
from conformance.strategies import partitions, record_batches
from conformance.targets import Target

# -- the catalogue ------------------------------------------------------------------------


def test_catalogue_has_enough_checks_with_stable_ids_and_spec_references() -> None:
    sinks, sources = all_checks("sink"), all_checks("source")
    assert len(sinks) >= 30 and len(sources) >= 20
    ids = [c.id for c in sinks + sources]
    assert len(ids) == len(set(ids))
    for check in sinks + sources:
        assert check.spec_ref.startswith("contract §"), check.id
        assert check.level in (Level.MUST, Level.SHOULD)
        assert check.requires <= set(CAPABILITIES), check.id
        assert check.title and check.doc
    assert get_check("SNK-LIFE-04").title == "close() is idempotent"


def test_check_registration_rejects_bad_ids_and_missing_spec_reference() -> None:
    with pytest.raises(ValueError, match="SNK-GROUP-NN"):
        sink_check("SINK-1", "bad")
    with pytest.raises(ValueError, match="group must be one of"):
        sink_check("SNK-NOPE-01", "bad")
    with pytest.raises(ValueError, match="unknown capabilities"):
        sink_check("SNK-LIFE-98", "bad", requires=("teleport",))
    with pytest.raises(ValueError, match="contract §N"):
        sink_check("SNK-LIFE-99", "bad")(lambda ctx: None)
    with pytest.raises(ValueError, match="duplicate"):

        def dup(ctx: Any) -> None:
            """contract §4."""

        sink_check("SNK-LIFE-01", "dup")(dup)
    with pytest.raises(KeyError, match="no conformance check"):
        get_check("SNK-LIFE-00")


def test_every_mutant_names_a_real_check_of_its_kind_and_breaks_one_rule() -> None:
    must = [m for m in MUTANTS if m.level is Level.MUST]
    assert len(must) >= 20
    assert any(m.level is Level.SHOULD for m in MUTANTS)
    for mutant in MUTANTS:
        if mutant.caught_by == AT_RESOLUTION:  # refused before any check runs
            assert (import_object(mutant.path).__doc__ or "").startswith("Breaks")
            continue
        check = get_check(mutant.caught_by)
        assert check.kind == mutant.kind and check.level is mutant.level, mutant.name
        cls = import_object(mutant.path)
        assert (cls.__doc__ or "").startswith("Breaks"), mutant.name
    for path in REFERENCE_SINKS + REFERENCE_SOURCES:
        assert isinstance(import_object(path), type)


# -- resolution ---------------------------------------------------------------------------


def test_import_object_accepts_dots_colons_and_nested_attributes() -> None:
    assert import_object("agora.MemorySink") is MemorySink
    assert import_object("agora:MemorySink") is MemorySink
    assert import_object("agora.sinks.memory.MemorySink") is MemorySink
    assert import_object("conformance.catalogue:Level.MUST") is Level.MUST


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz.Thing", "no such module"),
        ("agora.NoSuchThing", "has no attribute"),
        ("Thing", "names no module"),
        ("agora.", "not a dotted path"),
        (":Thing", "not a dotted path"),
    ],
)
def test_import_object_explains_what_was_tried(spec: str, message: str) -> None:
    with pytest.raises(ResolutionError, match=message):
        import_object(spec)


def test_import_object_reports_a_module_that_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cf_broken_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ResolutionError, match="importing 'cf_broken_mod' failed"):
        import_object("cf_broken_mod.Thing")


class _NeedsArgs(BaseSink):
    def __init__(self, path: str) -> None:
        self.path = path


def make_needs_args(tmp: Path) -> _NeedsArgs:
    return _NeedsArgs(str(tmp))


_INSTANCE = MemorySink()
_HERE = __name__


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": [f"{_HERE}:_NeedsArgs"]}, r"needs constructor arguments \(path\)"),
        ({"classes": [f"{_HERE}:_INSTANCE"]}, "is a sink instance"),
        ({"classes": [f"{_HERE}:make_needs_args"]}, "pass it with --sink-factory"),
        ({"classes": ["json.JSONDecoder"]}, "does not subclass agora.BaseSink"),
        (
            {"classes": ["agora.MemorySink", "agora.NullSink"], "harnesses": ["x:y"]},
            "apply to one --sink",
        ),
        ({"classes": [], "factories": ["a:b"], "harnesses": ["c:d"]}, "not both"),
        ({"classes": ["agora.MemorySink"], "factories": ["operator:add"]}, "requires"),
        ({"classes": [], "harnesses": ["agora:MemorySink"]}, "is not a SinkHarness"),
    ],
)
def test_resolution_errors_say_what_to_do(kwargs: dict[str, Any], message: str) -> None:
    args = {"classes": [], "factories": [], "harnesses": [], **kwargs}
    with pytest.raises(ResolutionError, match=message) as info:
        resolve_targets("sink", args["classes"], args["factories"], args["harnesses"])
    assert "--sink-factory" in str(info.value) and "--sink-harness" in str(info.value)


def test_resolution_finds_builtin_declared_and_factory_harnesses() -> None:
    (csv_target,) = resolve_targets("sink", ["agora.CsvSink"], [], [])
    assert isinstance(csv_target.harness, CsvSinkHarness)
    assert builtin_harness_for(MemorySink) is MemorySinkHarness
    assert builtin_harness_for(type("Sub", (MemorySink,), {})) is None
    (declared,) = resolve_targets("sink", ["conformance.mutants.reference.JsonFileSink"], [], [])
    assert type(declared.harness).__name__ == "ReferenceSinkHarness"
    (factory,) = resolve_targets("sink", [f"{_HERE}:_NeedsArgs"], [f"{_HERE}:make_needs_args"], [])
    assert factory.harness.factory is make_needs_args and not factory.harness.has_read_back
    (harness_only,) = resolve_targets(
        "sink", [], [], ["conformance.builtin_harnesses:CsvSinkHarness"]
    )
    assert harness_only.component_class is import_object("agora.CsvSink")


def test_factory_arity_and_call(tmp_path: Path) -> None:
    assert factory_arity(lambda: 1) == 0
    assert factory_arity(lambda path: path) == 1
    assert factory_arity(lambda path=None: path) == 0
    with pytest.raises(TypeError, match="requires"):
        factory_arity(lambda a, b: None)
    with pytest.raises(TypeError, match="requires"):
        factory_arity(lambda *, path: None)
    assert call_factory(lambda path: path, tmp_path) == tmp_path


def test_namespace_pickles_without_its_components(tmp_path: Path) -> None:
    ns = Namespace("n", tmp_path, {"rows": [1]}, [object()])
    back = pickle.loads(pickle.dumps(ns))
    assert back.path == tmp_path and back.state == {"rows": [1]} and back.components == []


# -- the runner ---------------------------------------------------------------------------


class _ForgetfulSink(BaseSink):
    """Accepts everything, keeps nothing, but reports success (a black box cannot tell)."""

    async def write(self, record: Any) -> None:
        self._check_usable("write")


class _BrokenCloseSink(_ForgetfulSink):
    async def close(self) -> None:
        if self.state.value == "closed":
            raise RuntimeError("closed twice")
        await super().close()


class _WarningSink(_ForgetfulSink):
    async def open(self) -> None:
        import warnings

        warnings.warn("noisy sink", UserWarning, stacklevel=1)
        await super().open()


def _target(cls: type, harness: SinkHarness | None = None) -> Target:
    return Target("sink", cls.__qualname__, harness or SinkHarness(cls), "test", cls)


def _run(check_id: str, target: Target, tmp_path: Path) -> Any:
    return run_check(
        get_check(check_id), target, workdir=tmp_path, profile=Profile.for_level("smoke", seed=1)
    )


def test_runner_reports_not_verifiable_without_read_back(tmp_path: Path) -> None:
    outcome = _run("SNK-LIFE-05", _target(_ForgetfulSink), tmp_path)
    assert outcome.status is Status.NOT_VERIFIABLE and "read_back" in outcome.reason


def test_runner_reports_unsupported_for_undeclared_capability(tmp_path: Path) -> None:
    outcome = _run("SNK-PLANE-01", _target(_ForgetfulSink), tmp_path)
    assert outcome.status is Status.UNSUPPORTED and "arrow-native" in outcome.reason


def test_runner_reports_failure_with_the_components_exception(tmp_path: Path) -> None:
    outcome = _run("SNK-LIFE-04", _target(_BrokenCloseSink), tmp_path)
    assert outcome.status is Status.FAIL
    assert "close() call #2 raised RuntimeError: closed twice" in outcome.reason


def test_runner_records_warnings_instead_of_raising_them(tmp_path: Path) -> None:
    outcome = _run("SNK-LIFE-01", _target(_WarningSink), tmp_path)
    assert outcome.status is Status.PASS
    assert outcome.warnings == ["UserWarning: noisy sink"]


def test_runner_closes_what_a_failing_check_left_open(tmp_path: Path) -> None:
    class Harness(MemorySinkHarness):
        def read_back(self, ns: Namespace) -> list[Any]:
            raise AssertionError("read-back exploded")

    built: list[MemorySink] = []

    class Tracking(Harness):
        def build(self, ns: Namespace) -> Any:
            sink = super().build(ns)
            built.append(sink)
            return sink

    outcome = _run("SNK-LIFE-08", _target(MemorySink, Tracking(MemorySink)), tmp_path)
    assert outcome.status is Status.FAIL and "read-back exploded" in outcome.reason
    assert built and all(sink.closed for sink in built)


def test_runner_refuses_a_check_of_the_other_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source check"):
        _run("SRC-LIFE-01", _target(MemorySink, MemorySinkHarness()), tmp_path)


# -- the verdict and the report -----------------------------------------------------------


def _record(check_id: str, status: str, level: str = "MUST") -> dict[str, Any]:
    return {
        "id": check_id,
        "title": "t",
        "group": check_id.split("-")[1],
        "level": level,
        "status": status,
        "reason": "why\nmore",
    }


TARGET = {"kind": "sink", "target": "x.Y", "harness": "h"}


@pytest.mark.parametrize(
    ("records", "strict", "verdict"),
    [
        ([("SNK-LIFE-01", "pass", "MUST"), ("SNK-LIFE-02", "fail", "SHOULD")], False, CONFORMANT),
        (
            [("SNK-LIFE-01", "pass", "MUST"), ("SNK-LIFE-02", "fail", "SHOULD")],
            True,
            NON_CONFORMANT,
        ),
        ([("SNK-LIFE-01", "fail", "MUST")], False, NON_CONFORMANT),
        ([("SNK-LIFE-01", "error", "MUST")], False, NON_CONFORMANT),
        (
            [("SNK-LIFE-01", "not-verifiable", "MUST"), ("SNK-LIFE-04", "pass", "MUST")],
            False,
            CONFORMANT_BLACK_BOX,
        ),
        (
            [("SNK-LIFE-01", "unsupported", "MUST"), ("SNK-LIFE-04", "pass", "MUST")],
            False,
            CONFORMANT,
        ),
    ],
)
def test_verdict(records: list[tuple[str, str, str]], strict: bool, verdict: str) -> None:
    collector = ReportCollector(strict=strict)
    for check_id, status, level in records:
        collector.add(TARGET, _record(check_id, status, level))
    (summary,) = collector.summaries
    assert summary.verdict == verdict


def test_summary_table_and_json_report(tmp_path: Path) -> None:
    collector = ReportCollector()
    collector.add(TARGET, _record("SNK-LIFE-04", "fail"))
    collector.add(TARGET, _record("SNK-DECL-01", "pass"))
    collector.add(TARGET, _record("SNK-LIFE-02", "fail", "SHOULD"))
    (summary,) = collector.summaries
    lines = render_summary(summary, {"level": "smoke", "seed": 7})
    text = "\n".join(lines)
    assert "MUST pass/fail" in text and "seed 7" in text
    assert "verdict: NON-CONFORMANT — 1 failure(s):" in text
    assert "SNK-LIFE-04 (MUST) t: why" in text and "SHOULD not met: SNK-LIFE-02" in text
    assert summary.counts("LIFE") == {
        "must_pass": 0,
        "must_fail": 1,
        "should_pass": 0,
        "should_fail": 1,
        "unsupported": 0,
        "not_verifiable": 0,
    }
    path = tmp_path / "deep" / "report.json"
    write_json_report(path, collector.summaries, {"level": "smoke", "seed": 7})
    document = json.loads(path.read_text())
    assert document["verdict"] == NON_CONFORMANT and document["seed"] == 7
    (target,) = document["targets"]
    assert target["must_failures"] == ["SNK-LIFE-04"]
    assert {c["id"] for c in target["checks"]} == {"SNK-LIFE-04", "SNK-DECL-01", "SNK-LIFE-02"}


# -- comparison forms, strategies, levels ---------------------------------------------------


def test_canonical_values_compare_nan_and_time_zones() -> None:
    assert canonical_value(float("nan")) == NAN
    utc = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    plus2 = utc.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert (
        canonical_value(utc) == canonical_value(plus2) != canonical_value(utc.replace(tzinfo=None))
    )
    assert canonical_row({"b": 1, "a": [1.0]}) == canonical_row({"a": [1], "b": 1})
    assert describe_multiset_diff([1, 2], [2, 1]) is None
    diff = describe_multiset_diff([1, 2], [2, 2, 3])
    assert (
        diff is not None
        and "1 missing" in diff
        and "1 duplicated" in diff
        and "1 never written" in diff
    )


def test_text_and_json_cells_agree_across_spellings() -> None:
    assert text_cell(1) == text_cell(1.0) == text_cell("1") == text_cell("1.0")
    assert text_cell(True) == text_cell("true") == text_cell("True")
    assert text_cell(None) == text_cell("") is None
    assert text_cell(float("nan")) == text_cell("nan") == NAN
    assert text_cell(2**53 + 1) != text_cell(2**53)
    stamp = dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert text_cell(stamp) == text_cell("2024-01-02 03:04:05.000006Z")
    assert text_cell("plain words") == "plain words"
    assert json_cell("NaN") == json_cell(math.nan)
    assert json_cell("Infinity") == json_cell(math.inf)
    assert json_cell(stamp.isoformat()) == json_cell(stamp)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_strategies_respect_declared_features(data: st.DataObject) -> None:
    batch = data.draw(record_batches(frozenset({"int", "float", "str"}), max_rows=10))
    assert batch.column("id").to_pylist() == list(range(batch.num_rows))
    for column in batch.columns[1:]:
        assert column.null_count == 0
        for value in column.to_pylist():
            assert not (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))
    n = data.draw(st.integers(0, 30))
    sizes = data.draw(partitions(n))
    assert sum(sizes) == n and all(s >= 0 for s in sizes)


def test_levels_budgets_and_ci_derandomization(monkeypatch: pytest.MonkeyPatch) -> None:
    smoke = Profile.for_level("smoke", seed=3)
    assert (smoke.max_examples, smoke.step_count, smoke.seed) == (10, 10, 3)
    assert Profile.for_level("thorough", seed=1).max_examples == 500
    with pytest.raises(ValueError, match="conformance level"):
        Profile.for_level("extreme")
    monkeypatch.setenv("CI", "true")
    ci = Profile.for_level("standard")
    assert ci.derandomize and ci.seed is None and ci.hypothesis_settings().derandomize
    monkeypatch.setenv("CI", "false")
    assert not Profile.for_level("standard").derandomize


def test_package_exports_resolve_lazily() -> None:
    conformance = importlib.import_module("conformance")
    for name in conformance.__all__:
        assert getattr(conformance, name) is not None
    with pytest.raises(AttributeError):
        conformance.NoSuchName  # noqa: B018


def test_the_user_guide_lists_every_check() -> None:
    guide = (Path(__file__).resolve().parents[2] / "conformance" / "README.md").read_text()
    missing = [c.id for c in all_checks() if f"| {c.id} |" not in guide]
    assert not missing, f"conformance/README.md does not list {missing}"
