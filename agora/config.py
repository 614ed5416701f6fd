"""Delivery configuration and its policies (SPEC §7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agora.records import DLQRecord

__all__ = [
    "CheckpointFailurePolicy",
    "DLQFailurePolicy",
    "DeliveryConfig",
    "FailurePolicy",
    "SinkFailurePolicy",
]


class FailurePolicy(StrEnum):
    """What happens to a failure the DLQ did not capture."""

    FAIL_CLOSED = "fail_closed"  # stop the run, raise the original exception
    LOG_AND_CONTINUE = "log_and_continue"  # count it errored, let the checkpoint pass it


SinkFailurePolicy = FailurePolicy  # alias kept for code written against upstream Agora


class DLQFailurePolicy(StrEnum):
    """What happens when writing to the DLQ itself fails."""

    LOG_ONLY = "log_only"  # log, then fall back to failure_policy
    RAISE = "raise"  # stop the run with the DLQ's exception


class CheckpointFailurePolicy(StrEnum):
    """What happens when saving a checkpoint fails."""

    FAIL_CLOSED = "fail_closed"
    LOG_AND_CONTINUE = "log_and_continue"


_UNSET: Any = object()


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    """How a run delivers, dead-letters and checkpoints. All fields keyword-only.

    * ``checkpoint_every``: handled records between checkpoint saves (a save also happens
      at the clean end of the stream). Trade-off: smaller means fewer duplicates after a
      crash, larger means fewer durable commits.
    * ``batch_size``: on the row lane, how many records the writer groups per delivery
      call and per commit step.
    * ``max_buffer_size``: upper bound on records held between the source and the commit
      (units in flight, and the row-lane writer group); at least one unit is always
      held. It bounds memory and the duplicate window after a crash; keep it at least
      ``max_in_flight_batches`` × batch rows or it, not the pool, limits pipelining.
    * ``dlq_redactor``: ``fn(DLQRecord) -> DLQRecord`` applied before every DLQ write
      (mask or drop sensitive fields); if it raises, the DLQ write counts as failed.
    """

    dlq: Any = None
    dlq_failure_policy: DLQFailurePolicy = DLQFailurePolicy.LOG_ONLY
    checkpoint: Any = None
    checkpoint_key: str | None = None
    checkpoint_every: int = 1000
    checkpoint_failure_policy: CheckpointFailurePolicy = CheckpointFailurePolicy.FAIL_CLOSED
    batch_size: int = 1
    failure_policy: FailurePolicy = FailurePolicy.FAIL_CLOSED
    max_buffer_size: int = 1_000_000
    dlq_redactor: Callable[[DLQRecord], DLQRecord] | None = None
    sink_failure_policy: InitVar[FailurePolicy | str | None] = None

    def __post_init__(self, sink_failure_policy: FailurePolicy | str | None) -> None:
        if sink_failure_policy is not None:
            if self.failure_policy is not FailurePolicy.FAIL_CLOSED and FailurePolicy(
                sink_failure_policy
            ) is not FailurePolicy(self.failure_policy):
                raise ValueError(
                    "DeliveryConfig got both failure_policy and its alias sink_failure_policy "
                    "with different values; pass only failure_policy"
                )
            object.__setattr__(self, "failure_policy", sink_failure_policy)
        for name, enum in (
            ("failure_policy", FailurePolicy),
            ("dlq_failure_policy", DLQFailurePolicy),
            ("checkpoint_failure_policy", CheckpointFailurePolicy),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                valid = ", ".join(repr(m.value) for m in enum)
                raise ValueError(
                    f"DeliveryConfig.{name} must be one of {valid}; got {value!r}"
                ) from None
        for name in ("checkpoint_every", "batch_size", "max_buffer_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DeliveryConfig.{name} must be an integer >= 1; got {value!r}")
        if self.dlq_redactor is not None and not callable(self.dlq_redactor):
            raise TypeError("DeliveryConfig.dlq_redactor must be callable: fn(DLQRecord) -> DLQRecord")
        if self.checkpoint is not None and not all(
            hasattr(self.checkpoint, m) for m in ("load", "save")
        ):
            raise TypeError(
                "DeliveryConfig.checkpoint must be a CheckpointStore (with load() and save()); "
                f"got {type(self.checkpoint).__name__}"
            )
