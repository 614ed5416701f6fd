"""A source that reads a dead-letter queue back, as ``DLQRecord`` objects."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from agora.records import DLQRecord, SourceIdentity
from agora.sources.base import BaseSource
from agora.stores.dlq_read import read_dlq

__all__ = ["DLQSource", "SourceIdentity"]


class DLQSource(BaseSource[DLQRecord]):
    """Streams the records of a DLQ file (SQLite or JSON lines, told from the file) in the
    order they were written, optionally only one pipeline's or one stage's.

    Read-only: it never marks or removes records (``agora dlq replay`` /
    ``BoundPipeline.replay()`` re-send dead letters and record what was replayed). Not
    checkpointable: each run reads the whole file. A missing or unrecognisable file raises
    :class:`~agora.errors.DLQError` naming it when the stream starts.
    """

    source_name = "dlq"

    def __init__(self, path: str | os.PathLike[str], *, pipeline_id: str | None = None,
                 stage: str | None = None) -> None:
        self.path = Path(path)
        self.pipeline_id = pipeline_id
        self.stage = stage

    async def stream(self) -> AsyncIterator[DLQRecord]:
        for record in read_dlq(self.path, pipeline_id=self.pipeline_id, stage=self.stage):
            yield record

    def __repr__(self) -> str:
        return f"DLQSource({str(self.path)!r})"
