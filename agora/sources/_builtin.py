"""Lifecycle, checkpoint validation and naming plumbing shared by the built-in sources."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, TypeVar

import pyarrow as pa

from agora.errors import CheckpointError, LifecycleError
from agora.planes import DataPlane, SourceDataPlaneSpec
from agora.records import Checkpoint
from agora.sources.base import BaseSource

__all__ = [
    "START_OVER",
    "BuiltinSource",
    "OnMalformed",
    "SourceState",
    "bad_checkpoint",
    "checkpoint_fields",
    "compact_slice",
    "count_field",
    "file_source_name",
    "missing_file_error",
    "parse_on_malformed",
    "positive_int_or_none",
]

#: How to start over when a checkpoint cannot be trusted; every such error ends with it.
START_OVER = (
    "to start over, reset the checkpoint (agora checkpoint reset STORE --key KEY) or run "
    "with a new checkpoint_key"
)


class OnMalformed(StrEnum):
    """What a file source does with a malformed input record."""

    FAIL = "fail"  # raise SourceRecordError naming file, line and reason
    DLQ = "dlq"  # emit a MalformedRecord in its place and continue


class SourceState(StrEnum):
    """``NEW`` (fresh or re-prepared) → ``OPEN`` → ``CLOSED`` → ``prepare_resume`` → ``NEW``."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


_Choice = TypeVar("_Choice", bound=StrEnum)


def parse_choice(source_name: str, option: str, kind: type[_Choice], value: _Choice | str,
                 hint: str = "") -> _Choice:
    """``value`` as a member of ``kind``; else a ``ValueError`` naming the source, the
    option, the values it takes and what was given (then ``hint``)."""
    try:
        return kind(value)
    except ValueError:
        allowed = " or ".join(repr(m.value) for m in kind)
        raise ValueError(
            f"source {source_name!r}: {option} must be {allowed}; got {value!r}{hint}"
        ) from None


def parse_on_malformed(source_name: str, value: OnMalformed | str) -> OnMalformed:
    return parse_choice(source_name, "on_malformed", OnMalformed, value)


def file_source_name(kind: str, path: str | os.PathLike[str], name: str | None) -> str:
    """``name`` if given, else ``"<kind>:<basename>"``.

    The basename (not the absolute path) keeps the name stable when the same input is read
    from another directory or a fresh temp dir; the kind prefix keeps checkpoints of two
    different readers of one file (say CSV rows vs Arrow CSV) from being mixed up.
    """
    if name is not None:
        return name
    return f"{kind}:{os.path.basename(os.fspath(path))}"


def missing_file_error(source_name: str, path: str) -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENOENT,
        f"source {source_name!r}: input file does not exist (relative paths resolve against "
        f"{os.getcwd()!r}); check the path, or create the file before running the pipeline",
        path,
    )


def positive_int_or_none(source_name: str, field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"source {source_name!r}: {field} must be a positive int; got {value!r}")
    return value


def compact_slice(batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
    """``batch[offset:]`` with freshly packed buffers.

    A plain ``slice`` keeps the parent's buffers alive and carries an offset; a resumed run
    slices at most one batch, so copying it once is cheap and every emitted batch stays
    compact.
    """
    if offset == 0:
        return batch
    return pa.concat_batches([batch.slice(offset)])


def bad_checkpoint(source_name: str, value: Any, expected: str) -> CheckpointError:
    return CheckpointError(
        f"source {source_name!r}: checkpoint value {value!r:.300} is not one this source "
        f"wrote; expected {expected}. Was it saved by a different source or an older "
        f"version? {START_OVER[0].upper()}{START_OVER[1:]}"
    )


def count_field(source_name: str, value: Any, expected: str, raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise bad_checkpoint(source_name, value, expected)
    return raw


def checkpoint_fields(source_name: str, value: Any, fields: tuple[str, ...]) -> dict[str, int]:
    """Validate a ``{field: non-negative int, ...}`` checkpoint value and return it."""
    expected = "{" + ", ".join(f'"{f}": <int >= 0>' for f in fields) + "}"
    if not isinstance(value, Mapping) or set(value) != set(fields):
        raise bad_checkpoint(source_name, value, expected)
    return {f: count_field(source_name, value, expected, value[f]) for f in fields}


class BuiltinSource(BaseSource):
    """Lifecycle and plane plumbing shared by the built-in sources.

    A built-in source can be read any number of times, one read at a time:
    ``prepare_resume(checkpoint | None)`` puts it back to a fresh state (then at the
    checkpoint, if one is given) — valid before the first ``open()`` and again after
    ``close()``; ``open()`` is valid once per ``prepare_resume`` (and once on a new
    instance); ``close()`` is idempotent and valid in any state. Subclasses implement
    ``_reset`` (per-read state back to "nothing read"), ``_apply_checkpoint`` (validate and
    remember a position), ``_open`` and ``_close``.
    """

    supports_checkpoint = True
    plane: DataPlane = DataPlane.PYTHON_ROWS  # what data_plane_spec() declares

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"source name must be a non-empty str; got {name!r}")
        self.source_name = name
        self._state = SourceState.NEW

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, self.plane)

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        if self._state is SourceState.OPEN:
            raise LifecycleError(
                f"source {self.source_name!r}: prepare_resume() must be called before open(); "
                f"the source is open — close() it first to read it again"
            )
        if checkpoint is not None:
            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(
                    f"source {self.source_name!r}: prepare_resume() takes an agora Checkpoint "
                    f"or None; got {type(checkpoint).__name__}"
                )
            if checkpoint.source != self.source_name:
                raise CheckpointError(
                    f"source {self.source_name!r}: the checkpoint belongs to source "
                    f"{checkpoint.source!r}; reset it (agora checkpoint reset) or use that source"
                )
        # A new read starts from nothing, whatever an earlier read left behind.
        self._reset()
        self._state = SourceState.NEW
        if checkpoint is not None:
            with self._naming_the_file():
                self._apply_checkpoint(checkpoint.value)

    async def open(self) -> None:
        if self._state is not SourceState.NEW:
            raise LifecycleError(
                f"source {self.source_name!r} is already {self._state.value}; call "
                f"prepare_resume(None or a checkpoint) to read it again (the runtime does "
                f"this at the start of every run)"
            )
        with self._naming_the_file():
            self._open()
        self._state = SourceState.OPEN

    async def close(self) -> None:
        if self._state is SourceState.OPEN:
            self._state = SourceState.CLOSED
            self._close()
        else:
            self._state = SourceState.CLOSED

    @contextmanager
    def _naming_the_file(self) -> Iterator[None]:
        """Checkpoint errors of a file source name its file (the name may not say it)."""
        try:
            yield
        except CheckpointError as exc:
            path = getattr(self, "path", None)
            if path is None or path in str(exc):
                raise
            raise CheckpointError(f"{exc} (input file: {path!r})") from exc.__cause__

    def _read_unopened(self, method: str) -> AsyncGenerator[Any, None] | None:
        """For a read method called on a source nobody opened (state ``NEW``): the read to
        hand out instead — it opens the source, reads it through ``method``, and closes it
        again (back to ``NEW``, so another such read starts over) however it ends. This is
        how 0.3.0 programs read a source on its own. None when the source is open, a
        ``LifecycleError`` when it was closed."""
        if self._state is SourceState.NEW:
            return self._read_alone(method)
        self._require_open(method)
        return None

    async def _read_alone(self, method: str) -> AsyncGenerator[Any, None]:
        await self.open()
        try:
            async for item in getattr(self, method)():
                yield item
        finally:
            await self.close()
            self._reset()
            self._state = SourceState.NEW

    def _require_open(self, method: str) -> None:
        if self._state is not SourceState.OPEN:
            raise LifecycleError(
                f"source {self.source_name!r}: {method}() needs an open source; it is "
                f"{self._state.value} — call open() first (the runtime does this for you)"
            )

    # -- subclass hooks ---------------------------------------------------------------
    def _reset(self) -> None:
        """Per-read state back to "nothing read yet" (called by every ``prepare_resume``)."""
        raise NotImplementedError

    def _apply_checkpoint(self, value: Any) -> None:
        raise NotImplementedError

    def _open(self) -> None:
        """Acquire resources; raise a clear error if the input is missing."""

    def _close(self) -> None:
        """Release resources (called at most once, only after a successful ``_open``)."""
