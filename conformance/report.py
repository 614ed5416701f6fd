"""Conformance results: collection, per-group counts, the verdict, the terminal table and
the JSON report."""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.catalogue import SINK_GROUPS, SOURCE_GROUPS, Level, Status

__all__ = [
    "CONFORMANT",
    "CONFORMANT_BLACK_BOX",
    "NON_CONFORMANT",
    "PARTIAL",
    "REPORT_VERSION",
    "ReportCollector",
    "TargetSummary",
    "overall_verdict",
    "render_summary",
    "write_json_report",
]

REPORT_VERSION = 1
CONFORMANT = "CONFORMANT"
CONFORMANT_BLACK_BOX = "CONFORMANT (black-box)"
NON_CONFORMANT = "NON-CONFORMANT"
#: A run that did not execute every check applicable to the target (``-k``, ``--deselect``,
#: ``-x``, a marker subset): it states what it found and gives no verdict.
PARTIAL = "NO VERDICT (partial run)"
_COLUMNS = ("must_pass", "must_fail", "should_pass", "should_fail", "unsupported", "not_verifiable")


@dataclass
class TargetSummary:
    """Every check outcome for one target, with counts and the verdict."""

    target: dict[str, Any]
    checks: list[dict[str, Any]] = field(default_factory=list)
    strict: bool = False

    @property
    def groups(self) -> list[str]:
        order = SINK_GROUPS if self.target.get("kind") == "sink" else SOURCE_GROUPS
        present = {c["group"] for c in self.checks}
        return [g for g in order if g in present] + sorted(present - set(order))

    def counts(self, group: str | None = None) -> dict[str, int]:
        out = dict.fromkeys(_COLUMNS, 0)
        for c in self.checks:
            if group is not None and c["group"] != group:
                continue
            status, must = c["status"], c["level"] == Level.MUST.value
            if status == Status.PASS.value:
                out["must_pass" if must else "should_pass"] += 1
            elif status in (Status.FAIL.value, Status.ERROR.value):
                out["must_fail" if must else "should_fail"] += 1
            elif status == Status.UNSUPPORTED.value:
                out["unsupported"] += 1
            elif status == Status.NOT_VERIFIABLE.value:
                out["not_verifiable"] += 1
        return out

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Checks that make the target non-conformant (MUST; SHOULD too when strict)."""
        return [
            c
            for c in self.checks
            if c["status"] in (Status.FAIL.value, Status.ERROR.value)
            and (c["level"] == Level.MUST.value or self.strict)
        ]

    @property
    def total(self) -> int:
        """How many checks apply to the target (every one must run for a verdict)."""
        return int(self.target.get("checks_total") or len(self.checks))

    @property
    def partial(self) -> bool:
        return len(self.checks) < self.total

    @property
    def missing_hooks(self) -> dict[str, int]:
        """Harness hooks whose absence made checks NOT-VERIFIABLE, with how many each."""
        hooks: dict[str, int] = {}
        for c in self.checks:
            if c["status"] == Status.NOT_VERIFIABLE.value:
                hook = c.get("missing_hook") or "unknown hook"
                hooks[hook] = hooks.get(hook, 0) + 1
        return hooks

    @property
    def verdict(self) -> str:
        if self.partial:
            return PARTIAL
        if self.failures:
            return NON_CONFORMANT
        if any(c["status"] == Status.NOT_VERIFIABLE.value for c in self.checks):
            return CONFORMANT_BLACK_BOX
        return CONFORMANT

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.target,
            "verdict": self.verdict,
            "checks_run": len(self.checks),
            "checks_total": self.total,
            "missing_hooks": self.missing_hooks,
            "counts": self.counts(),
            "groups": {g: self.counts(g) for g in self.groups},
            "must_failures": [c["id"] for c in self.failures],
            "checks": sorted(self.checks, key=lambda c: c["id"]),
        }


class ReportCollector:
    """Gathers check records (from pytest reports) per target, in arrival order."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._summaries: dict[tuple[str, str], TargetSummary] = {}

    def add(self, target: dict[str, Any], record: dict[str, Any]) -> None:
        key = (target["kind"], target["target"])
        summary = self._summaries.setdefault(key, TargetSummary(dict(target), strict=self.strict))
        summary.checks = [c for c in summary.checks if c["id"] != record["id"]] + [record]

    @property
    def summaries(self) -> list[TargetSummary]:
        return list(self._summaries.values())

    def __bool__(self) -> bool:
        return bool(self._summaries)


def _first_line(text: Any, limit: int = 160) -> str:
    text = str(text or "")
    line = (text or "").strip().splitlines()[0] if text and text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def render_summary(summary: TargetSummary, meta: dict[str, Any]) -> list[str]:
    """The terminal table for one target, ending in its verdict line."""
    t = summary.target
    seed = t.get("seed", meta.get("seed"))
    randomness = "derandomized" if t.get("derandomize", meta.get("derandomize")) else f"seed {seed}"
    lines = [
        f"conformance: {t['kind']} {t['target']}",
        f"  harness {t['harness']}; level {t.get('level', meta.get('level'))}, {randomness}",
        f"  {'group':<8}{'MUST pass/fail':>16}{'SHOULD pass/fail':>18}"
        f"{'unsupported':>13}{'not-verifiable':>16}",
    ]
    for group in summary.groups + ["total"]:
        c = summary.counts(None if group == "total" else group)
        lines.append(
            f"  {group:<8}{c['must_pass']:>11}/{c['must_fail']:<4}"
            f"{c['should_pass']:>13}/{c['should_fail']:<4}"
            f"{c['unsupported']:>13}{c['not_verifiable']:>16}"
        )
    verdict = summary.verdict
    failures = summary.failures
    if summary.partial:
        ran = len(summary.checks)
        lines.append(f"  partial run: {ran} of {summary.total} checks — no verdict")
        if failures:
            lines.append(f"  {len(failures)} failure(s) among the checks that ran:")
    elif failures:
        lines.append(f"  verdict: {verdict} — {len(failures)} failure(s):")
    if failures:
        for c in failures[:5]:
            lines.append(f"    {c['id']} ({c['level']}) {c['title']}: {_first_line(c['reason'])}")
        if len(failures) > 5:
            lines.append(f"    … and {len(failures) - 5} more (see the JSON report)")
    elif not summary.partial:
        lines.append(f"  verdict: {verdict}")
    hooks = summary.missing_hooks
    if hooks:
        named = ", ".join(f"{hook} ({n})" for hook, n in hooks.items())
        lines.append(f"  not verifiable: the harness lacks {named}")
    should = [
        c
        for c in summary.checks
        if c["level"] == Level.SHOULD.value and c["status"] == Status.FAIL.value
    ]
    if should and not summary.strict:
        lines.append("  SHOULD not met: " + ", ".join(c["id"] for c in should))
    return lines


def overall_verdict(summaries: Iterable[TargetSummary]) -> str:
    verdicts = [s.verdict for s in summaries]
    if not verdicts:
        return "NO CHECKS RUN"
    if PARTIAL in verdicts:
        return PARTIAL
    if NON_CONFORMANT in verdicts:
        return NON_CONFORMANT
    return CONFORMANT_BLACK_BOX if CONFORMANT_BLACK_BOX in verdicts else CONFORMANT


def write_json_report(path: Path, summaries: list[TargetSummary], meta: dict[str, Any]) -> None:
    """Write the JSON report (parent directories are created)."""
    try:
        import pyarrow

        pyarrow_version = pyarrow.__version__
    except ImportError:  # pragma: no cover - pyarrow is an agora dependency
        pyarrow_version = None
    from conformance._agora import agora_version

    document = {
        "report_version": REPORT_VERSION,
        "suite_version": agora_version,
        "agora_version": agora_version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "pyarrow": pyarrow_version,
        },
        **meta,
        "verdict": overall_verdict(summaries),
        "targets": [s.to_dict() for s in summaries],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
