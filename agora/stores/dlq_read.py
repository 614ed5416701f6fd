"""Reading a DLQ back, whichever sink wrote it: the format is told from the file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from agora.records import DLQRecord
from agora.stores._files import SQLITE_HEADER
from agora.stores.dlq import JSON_LINES_SUFFIXES, DLQError, SQLiteDLQSink
from agora.stores.dlq_jsonl import JsonLinesDLQSink

__all__ = ["read_dlq"]


def read_dlq(
    path: str | os.PathLike[str],
    *,
    pipeline_id: str | None = None,
    stage: str | None = None,
) -> Iterator[DLQRecord]:
    """Read back a DLQ written by :class:`SQLiteDLQSink` or :class:`JsonLinesDLQSink`.

    The format comes from the extension (``.jsonl``, ``.json``, ``.ndjson`` → JSON lines)
    or else from the file's first bytes. Optional filters keep only one pipeline's or one
    stage's records. Raises :class:`DLQError` for a missing or unrecognisable file.
    """
    path = Path(path)
    if path.suffix.lower() in JSON_LINES_SUFFIXES:
        return JsonLinesDLQSink.read(path, pipeline_id=pipeline_id, stage=stage)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise DLQError(f"DLQ file {path} does not exist") from None
    except OSError as exc:
        raise DLQError(f"cannot read DLQ file {path}: {exc}") from exc
    if head == SQLITE_HEADER:
        return SQLiteDLQSink.read(path, pipeline_id=pipeline_id, stage=stage)
    if head.lstrip()[:1] in (b"{", b""):
        return JsonLinesDLQSink.read(path, pipeline_id=pipeline_id, stage=stage)
    raise DLQError(
        f"cannot tell the format of DLQ file {path}: it is neither SQLite nor JSON lines"
    )
