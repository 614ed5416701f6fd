"""Deliberately broken sources: each breaks exactly one rule of contract §2/§3 (named in its
docstring) and is otherwise the reference source it subclasses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pyarrow as pa

from conformance._agora import Checkpoint, CheckpointError, DataPlane
from conformance.mutants.reference import (
    BATCH,
    ArrowJsonFileSource,
    BatchJsonFileSource,
    JsonFileSource,
)

__all__ = [
    "AcceptsCheckpointWithoutSupport",
    "CheckpointNotJson",
    "CheckpointSkipsRecord",
    "CloseNotIdempotent",
    "CloseUnopenedFails",
    "DeclaresArrowEmitsLists",
    "EmitsTuples",
    "EmptyInputCrashes",
    "FinalCheckpointRereads",
    "IgnoresCheckpoint",
    "IgnoresTrim",
    "ObserverEffect",
    "ProcessLocalCheckpoint",
    "RelativeCheckpointAfterResume",
    "RestartsOnForeignCheckpoint",
    "RestartsOnOtherInput",
    "ResumeRereadsBatch",
    "ReusesBatchList",
    "SchemaDrift",
]


class ResumeRereadsBatch(BatchJsonFileSource):
    """Breaks exact resume: restarts one batch before the checkpoint (duplicates)."""

    def position_from(self, value: Any) -> int:
        return max(0, super().position_from(value) - BATCH)


class IgnoresCheckpoint(JsonFileSource):
    """Breaks exact resume: prepare_resume accepts the checkpoint and re-reads everything."""

    def position_from(self, value: Any) -> int:
        super().position_from(value)
        return 0


class CheckpointSkipsRecord(JsonFileSource):
    """Breaks "the checkpoint names the position after the last emitted unit": it names
    one record further, so a resume loses a record."""

    def current_checkpoint(self) -> Any:
        return self.checkpoint_at(self._pos + 1)


class CheckpointNotJson(JsonFileSource):
    """Breaks "checkpoints are JSON values": the checkpoint holds a set."""

    def current_checkpoint(self) -> Any:
        return {**self.checkpoint_at(self._pos), "seen": {self._pos}}


class FinalCheckpointRereads(JsonFileSource):
    """Breaks exact resume at the end: resuming from the final checkpoint re-emits the last
    record."""

    def lines(self) -> list[Any]:
        assert self._fh is not None
        total = sum(1 for line in self._fh.read().split("\n") if line.strip())
        self._fh.seek(0)
        if total and self._pos >= total:
            self._pos = total - 1
        return super().lines()


class RelativeCheckpointAfterResume(JsonFileSource):
    """Breaks chained resume: after a resume, checkpoints count records since the resume
    instead of naming an absolute position."""

    _resumed_at = 0

    def position_from(self, value: Any) -> int:
        self._resumed_at = super().position_from(value)
        return self._resumed_at

    def current_checkpoint(self) -> Any:
        return self.checkpoint_at(self._pos - self._resumed_at)


_TOKENS: dict[str, int] = {}


class ProcessLocalCheckpoint(JsonFileSource):
    """Breaks "a checkpoint is all a restarted process has": the checkpoint is a token for
    a position kept in this process's memory, so it resumes only in the same process."""

    def current_checkpoint(self) -> Any:
        token = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.path}#{self._pos}").hex
        _TOKENS[token] = self._pos
        return {"token": token}

    def position_from(self, value: Any) -> int:
        return _TOKENS.get(value.get("token", ""), 0) if isinstance(value, dict) else 0


class ObserverEffect(JsonFileSource):
    """Breaks "taking a checkpoint does not move the source": each current_checkpoint()
    call after the first unit skips the next record."""

    async def stream(self) -> AsyncIterator[Any]:
        records = self.lines()
        self._skip = 0
        i = 0
        while i < len(records):
            i += self._skip
            self._skip = 0
            if i >= len(records):
                break
            self._pos = self._pos + 1
            yield records[i]
            i += 1

    def current_checkpoint(self) -> Any:
        if self._pos:
            self._skip = getattr(self, "_skip", 0) + 1
        return self.checkpoint_at(self._pos)


class DeclaresArrowEmitsLists(BatchJsonFileSource):
    """Breaks honest declarations: declares arrow_batches, emits list[dict]."""

    plane: ClassVar[DataPlane] = DataPlane.ARROW_BATCHES


class EmitsTuples(JsonFileSource):
    """Breaks honest declarations: declares python_rows, emits tuples of values."""

    async def stream(self) -> AsyncIterator[Any]:
        async for row in super().stream():
            yield tuple(row.values())


class SchemaDrift(ArrowJsonFileSource):
    """Breaks "one schema per stream": every second batch has its id column as float64."""

    _count = 0

    def make_batch(self, rows: list[dict[str, Any]]) -> Any:
        batch = super().make_batch(rows)
        self._count += 1
        if self._count % 2 == 0 and "id" in batch.schema.names:
            i = batch.schema.get_field_index("id")
            batch = batch.set_column(
                i, pa.field("id", pa.float64()), batch.column(i).cast(pa.float64())
            )
        return batch


class ReusesBatchList(BatchJsonFileSource):
    """Breaks "emitted units do not change": yields the same list object every time,
    cleared and refilled."""

    async def stream_batches(self) -> AsyncIterator[Any]:
        shared: list[Any] = []
        async for batch in super().stream_batches():
            shared.clear()
            shared.extend(batch)
            yield shared


class IgnoresTrim(ArrowJsonFileSource):
    """Breaks "the checkpoint of a trimmed batch never points past its last emitted row":
    it always points after the whole batch."""

    def checkpoint_within_last_batch(self, rows: int) -> Any:
        return self.checkpoint_at(self._pos)


class CloseNotIdempotent(JsonFileSource):
    """Breaks "close() is idempotent": a second close raises."""

    _closed = False

    async def close(self) -> None:
        if self._closed:
            raise RuntimeError(f"source {self.source_name!r} is already closed")
        self._closed = True
        await super().close()


class CloseUnopenedFails(JsonFileSource):
    """Breaks "a source need not be opened to be closed": close() assumes open()."""

    async def close(self) -> None:
        self._fh.close()  # type: ignore[union-attr]
        self._fh = None


class EmptyInputCrashes(JsonFileSource):
    """Breaks "empty input is valid": the stream reads its first record unconditionally."""

    async def stream(self) -> AsyncIterator[Any]:
        records = self.lines()
        if self._pos == 0:
            records[0]["__first__"] = True
            del records[0]["__first__"]
        for record in records:
            self._pos += 1
            yield record


class AcceptsCheckpointWithoutSupport(JsonFileSource):
    """Breaks "a source without checkpoint support refuses a checkpoint": it declares no
    support and silently restarts from scratch when given one."""

    supports_checkpoint = False

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        return None


class RestartsOnForeignCheckpoint(JsonFileSource):
    """Breaks "a foreign checkpoint is refused": a checkpoint value it did not write makes
    it quietly start over from the first record instead of raising CheckpointError."""

    def position_from(self, value: Any) -> int:
        try:
            return super().position_from(value)
        except CheckpointError:
            return 0


class RestartsOnOtherInput(JsonFileSource):
    """Breaks "a checkpoint over another input is refused": it recognises its own
    checkpoint format but, when the input fingerprint differs (another file), quietly
    restarts from the beginning."""

    def position_from(self, value: Any) -> int:
        if isinstance(value, dict) and value.get("input") != self.fingerprint():
            value = {**value, "input": self.fingerprint()}
            super().position_from(value)  # the shape is still validated
            return 0
        return super().position_from(value)
