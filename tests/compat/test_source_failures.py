"""A source that raises while being read: the failure is dead-lettered when a DLQ is set
(``source_record`` with the raw record a ``SourceRecordError(record=…)`` carries, else
``source_stream`` with no record), the source's own error stops the run, and the saved
checkpoint never passes what was handled before it."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agora import (
    AgoraError,
    BaseSource,
    DeliveryConfig,
    DLQFailurePolicy,
    DLQStage,
    SyncInMemoryCheckpointStore,
    JsonLinesDLQSink,
    MemorySink,
    Pipeline,
    SourceRecordError,
)
from agora.stores.dlq_read import read_dlq


class BreaksAfter(BaseSource):
    """Emits ``{"id": i}`` for i < ``good``, then raises ``error`` (its position: records
    emitted). ``position_fails`` makes ``current_checkpoint()`` raise once it broke."""

    supports_checkpoint = True

    def __init__(self, good: int, error: Exception, *, position_fails: bool = False) -> None:
        self.source_name = "breaks"
        self.good = good
        self.error = error
        self.position_fails = position_fails
        self.pos = 0
        self.broke = False

    def current_checkpoint(self) -> int:
        if self.broke and self.position_fails:
            raise RuntimeError("position unknown")
        return self.pos

    async def stream(self) -> AsyncIterator[Any]:
        while self.pos < self.good:
            self.pos += 1
            yield {"id": self.pos - 1}
        self.broke = True
        raise self.error


class TerminalSourceError(AgoraError):
    terminal = True


def run(source: BaseSource, dlq: Any = None, **delivery: Any) -> tuple[Any, MemorySink]:
    sink = MemorySink()
    bound = Pipeline(source, id="p").build(sink, delivery=DeliveryConfig(dlq=dlq, **delivery))
    return bound, sink


def test_a_source_record_error_dead_letters_its_raw_record_and_raises_the_wrapped_error(
        tmp_path: Path) -> None:
    bad = ValueError("bad row")
    error = SourceRecordError(bad, record={"raw": "x,,"}, checkpoint=7, source="breaks")
    bound, sink = run(BreaksAfter(2, error), JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(ValueError, match="bad row") as info:
        bound.run_sync()
    assert info.value is bad
    assert sink.records == [{"id": 0}, {"id": 1}]
    [rec] = read_dlq(tmp_path / "dlq.jsonl")
    assert rec.stage is DLQStage.SOURCE_RECORD
    assert (rec.record, rec.processed_record) == ({"raw": "x,,"}, None)
    assert (rec.source, rec.checkpoint, rec.middleware, rec.sink) == ("breaks", 7, None, None)
    assert (rec.error_type, rec.error_message) == ("SourceRecordError", "source 'breaks': bad row")


def test_a_source_that_raises_is_dead_lettered_as_source_stream_and_its_error_raised(
        tmp_path: Path) -> None:
    broken = OSError("connection reset")
    bound, sink = run(BreaksAfter(3, broken), JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(OSError, match="connection reset") as info:
        bound.run_sync()
    assert info.value is broken
    [rec] = read_dlq(tmp_path / "dlq.jsonl")
    assert rec.stage is DLQStage.SOURCE_STREAM
    assert (rec.record, rec.processed_record) == (None, None)
    assert (rec.source, rec.checkpoint, rec.error_type) == ("breaks", 3, "OSError")
    assert bound.last_summary.dlq.writes == 1


def test_a_source_record_error_without_a_wrapped_exception_is_raised_itself(
        tmp_path: Path) -> None:
    error = SourceRecordError("row 4 has no id", record={"line": 4})
    bound, _ = run(BreaksAfter(0, error), JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(SourceRecordError, match="row 4 has no id") as info:
        bound.run_sync()
    assert info.value is error
    [rec] = read_dlq(tmp_path / "dlq.jsonl")
    assert (rec.stage, rec.record, rec.checkpoint) == (DLQStage.SOURCE_RECORD, {"line": 4}, 0)


def test_a_source_record_error_may_name_its_own_stage(tmp_path: Path) -> None:
    error = SourceRecordError(KeyError("id"), record=b"\x00", stage="source_decode")
    bound, _ = run(BreaksAfter(0, error), JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(KeyError):
        bound.run_sync()
    [rec] = read_dlq(tmp_path / "dlq.jsonl")
    assert rec.stage == "source_decode"


def test_without_a_dlq_the_source_error_is_raised_unchanged() -> None:
    broken = OSError("disk gone")
    bound, sink = run(BreaksAfter(2, broken))
    with pytest.raises(OSError) as info:
        bound.run_sync()
    assert info.value is broken and len(sink.records) == 2
    assert bound.last_summary.dlq.writes == 0


def test_the_checkpoint_never_passes_the_records_handled_before_the_failure(
        tmp_path: Path) -> None:
    store = SyncInMemoryCheckpointStore()
    bound, sink = run(BreaksAfter(3, OSError("gone")), JsonLinesDLQSink(tmp_path / "d.jsonl"),
                      checkpoint=store, checkpoint_every=1)
    with pytest.raises(OSError):
        bound.run_sync()
    saved = store.load("p")
    assert saved is not None and saved.value == len(sink.records) == 3


def test_a_dlq_that_cannot_take_the_source_failure_does_not_replace_its_error(
        caplog: pytest.LogCaptureFixture) -> None:
    class RefusingDLQ(MemorySink):
        async def write_batch(self, records: list[Any]) -> Any:
            raise OSError("dlq is full")

    bound, _ = run(BreaksAfter(1, RuntimeError("source broke")), RefusingDLQ(name="dlq"),
                   dlq_failure_policy=DLQFailurePolicy.RAISE)
    with caplog.at_level(logging.ERROR, logger="agora.delivery"), \
            pytest.raises(RuntimeError, match="source broke"):
        bound.run_sync()
    assert bound.last_summary.dlq.failures == 1
    assert "failed to capture the failure of source 'breaks': OSError" in caplog.text


def test_a_failing_position_leaves_the_dead_letter_without_a_checkpoint(
        tmp_path: Path) -> None:
    bound, _ = run(BreaksAfter(1, OSError("gone"), position_fails=True),
                   JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(OSError, match="gone"):
        bound.run_sync()
    [rec] = read_dlq(tmp_path / "dlq.jsonl")
    assert (rec.stage, rec.checkpoint) == (DLQStage.SOURCE_STREAM, None)


def test_a_terminal_agora_error_from_a_source_is_not_dead_lettered(tmp_path: Path) -> None:
    bound, _ = run(BreaksAfter(1, TerminalSourceError("cannot go on")),
                   JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(TerminalSourceError):
        bound.run_sync()
    assert list(read_dlq(tmp_path / "dlq.jsonl")) == []


def test_a_batch_source_failure_is_dead_lettered_the_same_way(tmp_path: Path) -> None:
    class BatchesThenBreak(BreaksAfter):
        def data_plane_spec(self) -> Any:
            from agora.planes import DataPlane, SourceDataPlaneSpec
            return SourceDataPlaneSpec.for_plane(self.source_name, DataPlane.PYTHON_BATCHES)

        async def stream_batches(self) -> AsyncIterator[Any]:
            self.pos = 2
            yield [{"id": 0}, {"id": 1}]
            raise SourceRecordError(ValueError("torn batch"), record=[{"id": "?"}])

    bound, sink = run(BatchesThenBreak(0, OSError()), JsonLinesDLQSink(tmp_path / "dlq.jsonl"))
    with pytest.raises(ValueError, match="torn batch"):
        bound.run_sync()
    [rec] = read_dlq(tmp_path / "dlq.jsonl")
    assert (rec.stage, rec.record, rec.checkpoint) == (DLQStage.SOURCE_RECORD, [{"id": "?"}], 2)


def test_replay_reports_source_stream_records_and_sends_nothing(tmp_path: Path) -> None:
    dlq_path = tmp_path / "dlq.jsonl"
    bound, _ = run(BreaksAfter(1, OSError("gone")), JsonLinesDLQSink(dlq_path))
    with pytest.raises(OSError):
        bound.run_sync()
    replayed = MemorySink()
    report = asyncio.run(Pipeline(BreaksAfter(0, OSError()), id="p").build(replayed)
                         .replay(dlq_path))
    assert replayed.records == []
    assert report.not_replayable == {
        "a source failure (stage source_stream): it carries no record": 1}


def test_source_record_error_needs_a_record_or_a_location() -> None:
    with pytest.raises(TypeError, match=r"\(error, record=raw_record\).*pass the record"):
        SourceRecordError(ValueError("bad"))
    with pytest.raises(TypeError, match="source_name, location, reason"):
        SourceRecordError("src", "f.csv:3")


def test_both_spellings_keep_their_fields_through_pickle() -> None:
    wrapped = SourceRecordError(ValueError("bad"), record={"a": 1}, checkpoint=3, source="s")
    back = pickle.loads(pickle.dumps(wrapped))
    assert (back.record, back.checkpoint, back.source_name, back.stage, str(back)) == (
        {"a": 1}, 3, "s", "source_record", "source 's': bad")
    assert isinstance(back.original, ValueError) and back.has_record
    located = pickle.loads(pickle.dumps(SourceRecordError("s", "f.csv:3", "short row")))
    assert (located.location, located.reason, located.has_record, located.record) == (
        "f.csv:3", "short row", False, None)
