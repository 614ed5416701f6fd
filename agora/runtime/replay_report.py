"""What a replay sends and what it leaves alone, and the report it returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agora.errors import PipelineError
from agora.records import DLQStage
from agora.stores.dlq_state import DLQEntry

__all__ = ["ReplayPlan", "ReplayReport", "describe", "refuse_foreign", "select_entries"]

NOT_REPLAYABLE_RAW = "raw source input (stage source_record): not a row the chain accepts"
NOT_REPLAYABLE_STREAM = "a source failure (stage source_stream): it carries no record"
NOT_REPLAYABLE_FLAGGED = "a value was stored in a flagged form (round_trippable: false)"


@dataclass(frozen=True)
class ReplayPlan:
    """Which entries of a DLQ a replay re-sends, and why the others are left alone."""

    pipeline_id: str
    to_send: tuple[DLQEntry, ...]
    already_replayed: int
    other_stages: int
    other_pipelines: dict[str, int]
    not_replayable: dict[str, int]


def select_entries(entries: Sequence[DLQEntry], *, pipeline_id: str, stage: str | None,
                   include_replayed: bool) -> ReplayPlan:
    """Split ``entries`` into what a replay of ``pipeline_id`` sends and what it skips."""
    to_send: list[DLQEntry] = []
    replayed = other_stage = 0
    others: dict[str, int] = {}
    unusable: dict[str, int] = {}
    for entry in entries:
        rec = entry.record
        if rec.pipeline_id != pipeline_id:
            others[rec.pipeline_id] = others.get(rec.pipeline_id, 0) + 1
        elif stage is not None and rec.stage != stage:
            other_stage += 1
        elif entry.replayed and not include_replayed:
            replayed += 1
        elif rec.stage is DLQStage.SOURCE_RECORD:
            unusable[NOT_REPLAYABLE_RAW] = unusable.get(NOT_REPLAYABLE_RAW, 0) + 1
        elif rec.stage is DLQStage.SOURCE_STREAM:
            unusable[NOT_REPLAYABLE_STREAM] = unusable.get(NOT_REPLAYABLE_STREAM, 0) + 1
        elif not rec.round_trippable or rec.truncated:
            unusable[NOT_REPLAYABLE_FLAGGED] = unusable.get(NOT_REPLAYABLE_FLAGGED, 0) + 1
        else:
            to_send.append(entry)
    return ReplayPlan(pipeline_id, tuple(to_send), replayed, other_stage, others, unusable)


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of a replay (or, with ``dry_run``, what it would send). JSON-ready."""

    dlq: str
    pipeline_id: str
    dry_run: bool
    run_id: str | None
    sent: int
    handled: int
    failed_again: int
    already_replayed: int
    other_stages: int
    other_pipelines: dict[str, int]
    not_replayable: dict[str, int]
    records_written: int = 0
    records_dropped: int = 0
    would_send: tuple[dict[str, Any], ...] = ()
    summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when every record re-sent was handled (nothing failed again)."""
        return self.failed_again == 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["would_send"] = list(self.would_send)
        data["ok"] = self.ok
        return data

    def __str__(self) -> str:
        lines = [f"replay of {self.dlq} into pipeline {self.pipeline_id!r}"
                 + (" (dry run: nothing sent, nothing changed)" if self.dry_run else "")]
        if self.dry_run:
            lines.append(f"  would send {len(self.would_send)} record(s)")
            lines += [f"    entry {w['entry_id']}: {w['stage']} {w['error_type']}"
                      for w in self.would_send[:20]]
            if len(self.would_send) > 20:
                lines.append(f"    … and {len(self.would_send) - 20} more")
        else:
            lines.append(f"  sent {self.sent}, handled {self.handled} (written "
                         f"{self.records_written}, dropped {self.records_dropped}), "
                         f"failed again {self.failed_again}")
        if self.failed_again:
            lines.append(f"  {self.failed_again} record(s) failed again; they stay in the DLQ "
                         f"with attempts + 1 and their latest error")
        if self.already_replayed:
            lines.append(f"  skipped {self.already_replayed} already replayed "
                         f"(include them with --include-replayed)")
        for reason, n in self.not_replayable.items():
            lines.append(f"  cannot replay {n} record(s): {reason}; left in the DLQ")
        for pid, n in self.other_pipelines.items():
            lines.append(f"  skipped {n} record(s) of another pipeline {pid!r}")
        if self.other_stages:
            lines.append(f"  skipped {self.other_stages} record(s) of other stages")
        return "\n".join(lines)


def refuse_foreign(plan: ReplayPlan, dlq: str) -> None:
    """A DLQ holding records of other pipelines only is a mistaken target, not an empty
    replay: raise ``PipelineError`` naming the ids found and how to choose one."""
    if plan.other_pipelines and not (
        plan.to_send or plan.already_replayed or plan.other_stages or plan.not_replayable
    ):
        found = ", ".join(f"{pid!r} ({n})" for pid, n in sorted(plan.other_pipelines.items()))
        example = next(iter(sorted(plan.other_pipelines))) if len(plan.other_pipelines) == 1 \
            else "ID"
        raise PipelineError(
            f"DLQ {dlq} holds no record of pipeline {plan.pipeline_id!r}, only of {found}; "
            f"is this the right DLQ and target? To replay another pipeline's records into "
            f"this one, pass pipeline_id={example!r} (agora dlq replay --pipeline-id "
            f"{example})", stage="replay")


def describe(entry: DLQEntry) -> dict[str, Any]:
    rec = entry.record
    return {"entry_id": entry.entry_id, "stage": rec.stage, "attempts": entry.attempts,
            "error_type": entry.last_error_type or rec.error_type,
            "component": rec.middleware or rec.sink, "created_at": rec.created_at_text}
