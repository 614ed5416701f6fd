"""Fixtures for the store tests: record factories and a short SQLite busy timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agora.records import Checkpoint, DLQRecord
from agora.stores import _files


@pytest.fixture
def make_dlq_record() -> Callable[..., DLQRecord]:
    """``make_dlq_record(i, **changes)``: a distinct, JSON-clean DLQRecord per ``i``."""

    def make(i: int = 0, **changes: Any) -> DLQRecord:
        fields: dict[str, Any] = dict(
            pipeline_id="pipe",
            run_id="run-1",
            stage="middleware",
            error_type="ValueError",
            error_message=f"bad record {i}",
            source="numbers",
            checkpoint={"offset": i},
            record={"id": i, "name": f"row-{i}"},
            middleware="parse",
        )
        fields.update(changes)
        return DLQRecord(**fields)

    return make


@pytest.fixture
def make_checkpoint() -> Callable[..., Checkpoint]:
    def make(value: Any, *, source: str = "numbers", run_id: str = "run-1") -> Checkpoint:
        return Checkpoint(pipeline_id="pipe", run_id=run_id, source=source, value=value)

    return make


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections opened after this give up on a held write lock almost at once, so
    lock-contention failure paths are testable without waiting 10 s."""
    monkeypatch.setattr(_files, "BUSY_TIMEOUT_S", 0.05)
