"""The check catalogue: what a check is (stable ID, level, capability), how checks register,
and the outcomes a check can have."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "CAPABILITIES",
    "Check",
    "Level",
    "NotVerifiable",
    "SINK_GROUPS",
    "SOURCE_GROUPS",
    "Status",
    "Unsupported",
    "all_checks",
    "checks_for",
    "get_check",
    "sink_check",
    "source_check",
]


class Level(StrEnum):
    """How binding a check is. A MUST failure makes a component non-conformant."""

    MUST = "MUST"
    SHOULD = "SHOULD"


class Status(StrEnum):
    """The outcome of one check against one component."""

    PASS = "pass"
    FAIL = "fail"
    #: The component does not declare the capability the check needs (never a pass).
    UNSUPPORTED = "unsupported"
    #: The harness lacks what the check needs to verify (e.g. a read-back); never a pass.
    NOT_VERIFIABLE = "not-verifiable"
    #: The check could not run at all (a pytest setup error around it).
    ERROR = "error"


class Unsupported(Exception):
    """Raised inside a check: the component does not declare what this check needs."""


class NotVerifiable(Exception):
    """Raised inside a check: the harness cannot supply what the check needs to verify.

    ``hook`` names the exact harness method that is missing (``read_back``,
    ``invalid_record``, ``seed_data``, …), so the report can say what to add.
    """

    def __init__(self, message: str, *, hook: str | None = None) -> None:
        super().__init__(message)
        self.hook = hook


#: Every capability a check may require, and where it comes from.
CAPABILITIES: dict[str, str] = {
    # sinks
    "arrow-native": "the sink declares arrow_batches among its native planes",
    "rows-only": "the sink does not declare arrow_batches native (the runtime downgrades)",
    "persists": "the harness says the sink keeps what it is given (not a discarding sink)",
    "ordered": "the harness says the sink's medium keeps write order",
    "readable-before-close": "the harness can read back an open sink after flush()",
    "rejects-records": "the sink refuses some records (harness: accepts_any_record is False)",
    "dlq": "the sink stores agora.DLQRecords (its harness is a DLQSinkHarness)",
    # sources
    "checkpoint": "the source declares supports_checkpoint = True",
    "no-checkpoint": "the source declares supports_checkpoint = False",
    "arrow": "the source emits arrow_batches",
    "python-batches": "the source emits python_batches",
    "rows": "the source emits python_rows",
    "input-identity": "the harness says each source reads an input it can tell apart from "
    "another (a file, a table) — not an anonymous in-memory iterable",
}

SINK_GROUPS = ("DECL", "LIFE", "WRITE", "PLANE", "DLV", "PBT", "DLQ")
SOURCE_GROUPS = ("DECL", "OUT", "LIFE", "CKPT", "LIMIT", "RUN", "PBT")

_ID = re.compile(r"^(SNK|SRC)-([A-Z]+)-(\d{2})$")
_CONTRACT_REF = re.compile(r"contract §\d+")


@dataclass(frozen=True)
class Check:
    """One conformance check.

    ``func`` takes a check context (``SinkContext`` / ``SourceContext``) and returns None
    (pass) or raises ``AssertionError`` (fail), ``Unsupported`` or ``NotVerifiable``. It may
    be a coroutine function; the runner drives it on a fresh event loop.
    """

    id: str
    title: str
    level: Level
    kind: str
    requires: frozenset[str]
    func: Callable[..., Any]
    uses_hypothesis: bool = False

    @property
    def group(self) -> str:
        return self.id.split("-")[1]

    @property
    def doc(self) -> str:
        return (self.func.__doc__ or "").strip()

    @property
    def spec_ref(self) -> str:
        """The contract rule the docstring cites (e.g. ``contract §4``: docs/contract.md)."""
        found = _CONTRACT_REF.findall(self.doc)
        return ", ".join(dict.fromkeys(found))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "group": self.group,
            "level": self.level.value,
            "kind": self.kind,
            "requires": sorted(self.requires),
            "spec": self.spec_ref,
        }


_REGISTRY: dict[str, Check] = {}


def _register(
    kind: str,
    check_id: str,
    title: str,
    level: Level,
    requires: Iterable[str],
    hypothesis: bool,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    match = _ID.match(check_id)
    prefix = "SNK" if kind == "sink" else "SRC"
    if match is None or match.group(1) != prefix:
        raise ValueError(f"check id {check_id!r} must look like {prefix}-GROUP-NN")
    groups = SINK_GROUPS if kind == "sink" else SOURCE_GROUPS
    if match.group(2) not in groups:
        raise ValueError(f"check id {check_id!r}: group must be one of {groups}")
    unknown = set(requires) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"check {check_id}: unknown capabilities {sorted(unknown)}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if check_id in _REGISTRY:
            raise ValueError(f"duplicate check id {check_id}")
        if not _CONTRACT_REF.search(func.__doc__ or ""):
            raise ValueError(
                f"check {check_id}: the docstring must name the contract rule it enforces "
                f"as 'contract §N' (a section of docs/contract.md); got {func.__doc__!r}"
            )
        _REGISTRY[check_id] = Check(
            id=check_id,
            title=title,
            level=Level(level),
            kind=kind,
            requires=frozenset(requires),
            func=func,
            uses_hypothesis=hypothesis,
        )
        func.check_id = check_id  # type: ignore[attr-defined]
        return func

    return decorate


def sink_check(
    check_id: str,
    title: str,
    *,
    level: Level = Level.MUST,
    requires: Iterable[str] = (),
    hypothesis: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a sink check under a stable ID (``SNK-GROUP-NN``)."""
    return _register("sink", check_id, title, level, requires, hypothesis)


def source_check(
    check_id: str,
    title: str,
    *,
    level: Level = Level.MUST,
    requires: Iterable[str] = (),
    hypothesis: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a source check under a stable ID (``SRC-GROUP-NN``)."""
    return _register("source", check_id, title, level, requires, hypothesis)


def _ensure_loaded() -> None:
    # The check modules register themselves on import; importing here keeps the catalogue
    # complete for every caller without an import cycle at module load.
    import conformance.checks  # noqa: F401


def all_checks(kind: str | None = None) -> list[Check]:
    """Every registered check (of one kind), in group order then ID order."""
    _ensure_loaded()

    def key(check: Check) -> tuple[str, int, str]:
        groups = SINK_GROUPS if check.kind == "sink" else SOURCE_GROUPS
        return (check.kind, groups.index(check.group), check.id)

    return sorted((c for c in _REGISTRY.values() if kind is None or c.kind == kind), key=key)


def checks_for(kind: str, *, dlq: bool = False) -> list[Check]:
    """The checks that apply to one target: a DLQ sink (it stores ``DLQRecord``s, not rows)
    gets the DLQ group only; every other sink gets every group but DLQ; a source gets the
    source checks. This is the full set a verdict needs (see ``report``)."""
    checks = all_checks(kind)
    if kind != "sink":
        return checks
    return [c for c in checks if (c.group == "DLQ") == dlq]


def get_check(check_id: str) -> Check:
    _ensure_loaded()
    try:
        return _REGISTRY[check_id]
    except KeyError:
        raise KeyError(f"no conformance check {check_id!r}") from None
