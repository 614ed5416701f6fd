"""The Python API plugin authors subclass: ``SinkConformance`` / ``SourceConformance``. One
class in your own test module runs every check against your component."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conformance.catalogue import Check, Level, Status, checks_for
from conformance.levels import Profile
from conformance.resolve import (
    ResolutionError,
    default_harness,
    make_harness,
    resolve_targets,
    validate_target,
)
from conformance.runner import run_check
from conformance.targets import Target

__all__ = [
    "Case",
    "SinkConformance",
    "SourceConformance",
    "profile_for",
    "run_case",
    "target_checks",
]


def target_checks(target: Target) -> list[Check]:
    """Every check that applies to ``target`` (a DLQ sink gets the DLQ group only)."""
    return checks_for(target.kind, dlq=bool(getattr(target.harness, "dlq", False)))

_PROFILE_KEY = pytest.StashKey[Profile]()


@dataclass(frozen=True)
class Case:
    """One check against one target: the parameter of every conformance test item."""

    target: Target
    check: Check

    def __repr__(self) -> str:
        return f"{self.target.label}::{self.check.id}"


def profile_for(config: pytest.Config, default_level: str | None = None) -> Profile:
    """The run's level, budgets and seed (one per pytest session).

    Level: ``--conformance-level``, else ``default_level`` (a suite class's
    ``conformance_level``), else ``CONFORMANCE_LEVEL`` in the environment, else standard.
    """
    profile = config.stash.get(_PROFILE_KEY, None)
    if profile is None:
        seed = config.getoption("conformance_seed", None)
        profile = Profile.for_level(_level(config), seed=seed)
        config.stash[_PROFILE_KEY] = profile
    if (
        default_level
        and not config.getoption("conformance_level", None)
        and default_level != profile.level
    ):
        # A class asks for its own level: same seed, its budgets.
        return Profile.for_level(default_level, seed=profile.seed)
    return profile


def _level(config: pytest.Config) -> str | None:
    return (
        config.getoption("conformance_level", None) or os.environ.get("CONFORMANCE_LEVEL") or None
    )


def run_case(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest, level: str | None = None
) -> None:
    """Run one case and turn its outcome into the pytest result.

    PASS passes; a MUST failure (or any failure under ``--conformance-strict``) fails; a
    SHOULD failure is an xfail; UNSUPPORTED and NOT-VERIFIABLE are skips whose reason
    starts with the status. The outcome is attached to the report for the summary.
    """
    config = request.config
    profile = profile_for(config, level)
    outcome = run_check(case.check, case.target, workdir=tmp_path, profile=profile)
    target = {
        **case.target.to_dict(),
        "checks_total": len(target_checks(case.target)),
        "level": profile.level,
        "seed": profile.seed,
        "derandomize": profile.derandomize,
    }
    request.node.user_properties.append(
        ("conformance", {"target": target, "record": outcome.to_record()})
    )
    strict = bool(config.getoption("conformance_strict", False))
    where = f"{case.check.id} ({case.check.level.value}) {case.check.title}"
    if outcome.status is Status.PASS:
        return
    if outcome.status is Status.UNSUPPORTED:
        pytest.skip(f"UNSUPPORTED {where}: {outcome.reason}")
    if outcome.status is Status.NOT_VERIFIABLE:
        pytest.skip(f"NOT-VERIFIABLE {where}: {outcome.reason}")
    seed = (
        f"\n(Hypothesis seed {outcome.seed}; replay with --conformance-seed {outcome.seed})"
        if outcome.seed is not None
        else ""
    )
    if case.check.level is Level.SHOULD and not strict:
        pytest.xfail(
            f"SHOULD not met — {where}: {outcome.reason.splitlines()[0] if outcome.reason else ''}"
        )
    pytest.fail(f"{where}\n{outcome.reason}{seed}", pytrace=False)


class _ConformanceSuite:
    """Shared machinery; subclass ``SinkConformance`` or ``SourceConformance``."""

    __test__ = False
    kind: ClassVar[str] = ""
    #: A harness class or instance (SinkHarness / SourceHarness).
    harness: Any = None
    #: A zero-argument (or one-argument: a temp dir) factory returning a fresh component.
    factory: Any = None
    #: Level for this class when the command line gives none (smoke/standard/thorough).
    conformance_level: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    def _component(self) -> Any:
        return getattr(self, self.kind, None)

    def conformance_targets(self, config: pytest.Config) -> list[Target]:
        """The targets this class checks (override to check several)."""
        label = f"{type(self).__module__}:{type(self).__qualname__}"
        component = self._component()
        try:
            if self.harness is not None:
                cls = component if isinstance(component, type) else None
                harness = make_harness(self.kind, self.harness, cls, label=f"{label}.harness")
            elif self.factory is not None or component is not None:
                from conformance.harness import SinkHarness, SourceHarness

                base = SinkHarness if self.kind == "sink" else SourceHarness
                if self.factory is not None:
                    harness = base(component, factory=self.factory)
                else:
                    harness = default_harness(self.kind, component, label)
            else:
                raise ResolutionError(
                    f"set `harness = MyHarness`, `{self.kind} = My{self.kind.capitalize()}` or "
                    f"`factory = make_{self.kind}` on the class"
                )
            cls = component if isinstance(component, type) else getattr(harness, "target", None)
            cls = cls if isinstance(cls, type) else None
            name = f"{cls.__module__}.{cls.__qualname__}" if cls is not None else label
            target = Target(self.kind, name, harness, f"Python API ({label})", cls)
            return [validate_target(target)]
        except ResolutionError as exc:
            raise pytest.UsageError(f"conformance: {label}: {exc}") from None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "conformance_case" not in metafunc.fixturenames:
            return
        targets = self.conformance_targets(metafunc.config)
        several = len(targets) > 1
        params = [
            pytest.param(
                Case(t, c),
                id=f"{t.short}:{c.id}" if several else c.id,
            )
            for t in targets
            for c in target_checks(t)
        ]
        metafunc.parametrize("conformance_case", params)

    def test_conformance(
        self, conformance_case: Case, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        run_case(conformance_case, tmp_path, request, self.conformance_level)


class SinkConformance(_ConformanceSuite):
    """Subclass in your test module to run every sink check::

        class TestMySink(SinkConformance):
            harness = MySinkHarness        # build(ns) + read_back(ns), see SinkHarness
            # or: sink = MySink (no-arg constructor), or factory = make_sink

    Without a read-back, integrity checks report NOT-VERIFIABLE (the verdict is then at
    best "CONFORMANT (black-box)").
    """

    __test__ = False  # the base is not a test; subclasses are
    kind: ClassVar[str] = "sink"
    sink: Any = None


class SourceConformance(_ConformanceSuite):
    """Subclass in your test module to run every source check::

    class TestMySource(SourceConformance):
        harness = MySourceHarness      # build(ns) + seed_data(ns, rows), see SourceHarness
    """

    __test__ = False
    kind: ClassVar[str] = "source"
    source: Any = None


def configured_targets(config: pytest.Config, kind: str) -> list[Target]:
    """Targets resolved from the command line at configure time (see the plugin)."""
    from conformance.plugin import TARGETS_KEY

    return list(config.stash.get(TARGETS_KEY, {}).get(kind, []))


def resolve_from_options(config: pytest.Config, kind: str) -> list[Target]:
    try:
        return resolve_targets(
            kind,
            config.getoption(f"conformance_{kind}") or [],
            config.getoption(f"conformance_{kind}_factory") or [],
            config.getoption(f"conformance_{kind}_harness") or [],
        )
    except ResolutionError as exc:
        raise pytest.UsageError(str(exc)) from None
