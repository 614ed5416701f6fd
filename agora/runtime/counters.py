"""Read-only views of a run's counters: one middleware's counts, and the runtime dict
(readable by key and by attribute), with the 0.3.0 names they answer to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["ABSENT_MECHANISMS", "CSV_ARROW_KEYS", "MiddlewareCounts", "RuntimeFigures"]


class MiddlewareCounts(Mapping[str, Any]):
    """One middleware's counters: read-only, by key (``counts["in"]``, and any counter the
    middleware added) or as ``records_in`` / ``records_out`` / ``records_dropped`` /
    ``records_errored`` (the 0.3.0 names)."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, Any]) -> None:
        self._counts = dict(counts)

    def __getitem__(self, key: str) -> Any:
        return self._counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __repr__(self) -> str:
        return f"MiddlewareCounts({self._counts!r})"

    @property
    def records_in(self) -> int:
        return int(self._counts.get("in", 0))

    @property
    def records_out(self) -> int:
        return int(self._counts.get("out", 0))

    @property
    def records_dropped(self) -> int:
        return int(self._counts.get("dropped", 0))

    @property
    def records_errored(self) -> int:
        return int(self._counts.get("errored", 0))


class RuntimeFigures(dict[str, Any]):
    """The ``runtime`` dict of a summary, also readable by attribute
    (``summary.runtime.execution_lane``), as 0.3.0 code reads it. A name that is not a
    key is an AttributeError naming the keys there are."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"summary.runtime has no {name!r}; its keys are {', '.join(sorted(self))}"
            ) from None


#: 0.3.0 runtime keys that name mechanisms Agora does not have; they read as off/zero.
ABSENT_MECHANISMS: dict[str, bool | int] = {
    "rust_prefetch_active": False,
    "rust_prefetch_wait_count": 0,
    "rust_prefetch_batch_drain_count": 0,
    "rust_prefetch_push_batch_count": 0,
    "adaptive_backpressure_enabled": False,
    "adaptive_backpressure_scale_up_count": 0,
    "adaptive_backpressure_scale_down_count": 0,
}

#: The CSV sink's Arrow counters, reported under these keys even when no CSV sink ran.
CSV_ARROW_KEYS = ("csv_arrow_native_batch_count", "csv_arrow_native_row_count",
                   "csv_arrow_downgrade_batch_count", "csv_arrow_downgrade_row_count")
