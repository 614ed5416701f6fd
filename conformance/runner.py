"""Run one check against one target and classify the outcome (pass, fail, unsupported,
not-verifiable), independent of pytest."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.catalogue import Check, NotVerifiable, Status, Unsupported
from conformance.checks import SinkContext, SourceContext
from conformance.checks._context import HarnessMismatch
from conformance.levels import Profile
from conformance.targets import Target

__all__ = ["Outcome", "make_context", "run_check"]

_MAX_REASON = 2000


@dataclass
class Outcome:
    """What one check concluded about one target."""

    check: Check
    target: Target
    status: Status
    reason: str = ""
    duration_s: float = 0.0
    seed: int | None = None
    warnings: list[str] = field(default_factory=list)
    #: For NOT-VERIFIABLE: the harness hook whose absence stopped the check.
    missing_hook: str | None = None

    def to_record(self) -> dict[str, Any]:
        """JSON-ready entry for the report."""
        record = self.check.to_dict()
        record.update(
            target=self.target.label,
            status=self.status.value,
            reason=self.reason,
            duration_s=round(self.duration_s, 4),
        )
        if self.check.uses_hypothesis:
            record["hypothesis_seed"] = self.seed
        if self.warnings:
            record["warnings"] = self.warnings[:5]
        if self.missing_hook:
            record["missing_hook"] = self.missing_hook
        return record


def make_context(target: Target, workdir: Path, profile: Profile) -> SinkContext | SourceContext:
    cls = SinkContext if target.kind == "sink" else SourceContext
    return cls(target, workdir, profile)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, AssertionError):
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        text = f"unexpected {type(exc).__name__}: {text}{where}"
    notes = getattr(exc, "__notes__", None)
    if notes:  # Hypothesis puts the falsifying example here
        text += "\n" + "\n".join(str(n) for n in notes)
    return text


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run the body with ``path`` as the process's working directory, restoring the
    caller's afterwards — whatever a component writes to a relative path lands in the
    check's own folder, never in the user's."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_check(check: Check, target: Target, *, workdir: Path, profile: Profile) -> Outcome:
    """Run ``check`` against ``target`` in ``workdir`` and return its outcome.

    A missing capability is UNSUPPORTED before the check runs; ``Unsupported`` /
    ``NotVerifiable`` raised inside map to those statuses; an ``AssertionError`` — or any
    other exception the component raised — is a FAIL with the message as the reason.
    Warnings raised while the check runs are recorded, not turned into errors (the
    component under test is not the user's test suite). Whatever the check left open is
    closed afterwards. The check runs with ``workdir`` as the working directory. A harness
    that builds something other than the target is an ERROR (no verdict can rest on it).
    """
    if check.kind != target.kind:
        raise ValueError(f"check {check.id} is a {check.kind} check; target is a {target.kind}")
    started = time.perf_counter()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = make_context(target, workdir, profile)
    status, reason, hook = Status.PASS, "", None
    with warnings.catch_warnings(record=True) as caught, working_directory(workdir):
        warnings.simplefilter("always")
        try:
            missing = sorted(check.requires - ctx.capabilities())
            if missing:
                raise Unsupported(
                    f"needs capabilities {missing}, which {target.label} does not declare"
                )
            result = check.func(ctx)
            if inspect.isawaitable(result):
                asyncio.run(result)  # type: ignore[arg-type]
        except Unsupported as exc:
            status, reason = Status.UNSUPPORTED, str(exc)
        except NotVerifiable as exc:
            status, reason, hook = Status.NOT_VERIFIABLE, str(exc), exc.hook
        except HarnessMismatch as exc:
            status, reason = Status.ERROR, f"harness mismatch: {exc}"
        except Exception as exc:
            status, reason = Status.FAIL, _describe(exc)
        finally:
            ctx.cleanup()
    seen = [f"{w.category.__name__}: {w.message}" for w in caught]
    return Outcome(
        check=check,
        target=target,
        status=status,
        reason=_clip(reason),
        duration_s=time.perf_counter() - started,
        seed=profile.seed if check.uses_hypothesis else None,
        warnings=list(dict.fromkeys(seen)),
        missing_hook=hook,
    )
