"""Output files shared by the file sinks: opening with a clear error, private temporary
files that cannot be subverted in a shared folder, repairing a torn tail before
appending, fsync, and the flush/close every text file sink has."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path
from typing import BinaryIO

from agora._safe_files import OWNER_ONLY, ErrorFactory, untrusted_reason
from agora.errors import LifecycleError
from agora.sinks.base import BaseSink, SinkState

log = logging.getLogger("agora.sinks")

__all__ = [
    "TextFileSink",
    "UnsafeFileError",
    "check_complete_tail",
    "check_file_mode",
    "create_private_file",
    "ensure_openable",
    "mode_from",
    "open_output_file",
    "refusal",
    "sync_file",
]

_FILE_MODES = ("w", "a")


def ensure_openable(sink: BaseSink) -> bool:
    """Raise LifecycleError if ``sink`` is already open; return True when it is being
    reopened after ``close()`` or resumed from a checkpoint (``resume_output()``) — it then
    continues its output (appends) instead of starting it over."""
    if sink.state is SinkState.OPEN:
        raise LifecycleError(f"sink {sink.sink_name!r} is already open; close() it first")
    return sink.state is SinkState.CLOSED or sink.resuming_output


def check_file_mode(sink_name: str, mode: str) -> str:
    if mode not in _FILE_MODES:
        raise ValueError(
            f"sink {sink_name!r}: mode must be 'w' (truncate) or 'a' (append); got {mode!r}"
        )
    return mode


def open_output_file(sink_name: str, path: Path, mode: str) -> BinaryIO:
    """Open ``path`` for binary writing (``"w"`` truncates, ``"a"`` appends).

    A missing parent directory or an OS refusal is raised as the same ``OSError`` subclass
    with a message naming the sink and the path.
    """
    _check_parent(sink_name, path)
    try:
        return open(path, "ab" if mode == "a" else "wb")  # noqa: SIM115 - closed by the sink
    except OSError as exc:
        raise type(exc)(
            exc.errno, f"sink {sink_name!r} cannot open {str(path)!r} for writing: {exc.strerror}"
        ) from exc


def _check_parent(sink_name: str, path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"sink {sink_name!r} cannot create {str(path)!r}: directory {str(parent)!r} does "
            f"not exist — create it first or fix the path",
        )


class UnsafeFileError(PermissionError):
    """A file sink refused one of its own files (a link, another user's file, …); the
    message names the sink, the file and the fix."""


def refusal(sink_name: str) -> ErrorFactory:
    """The error a file sink raises for one of its own files it must not use."""
    return lambda message: UnsafeFileError(errno.EPERM, f"sink {sink_name!r}: {message}")


def create_private_file(sink_name: str, path: Path) -> BinaryIO:
    """Create ``path`` afresh as one of the sink's own temporary files, for binary writing.

    The folder may be shared, so: a regular file of this user's left at ``path`` by a
    crashed run is removed first; anything else there (a link, another user's file, not a
    regular file) is refused with ``PermissionError`` naming the sink, the file and the
    fix, and nothing is written through it. The file is then created exclusively
    (``O_CREAT | O_EXCL``, never through a link) with mode 0600.
    """
    _check_parent(sink_name, path)

    def cannot(exc: OSError) -> OSError:
        return type(exc)(
            exc.errno, f"sink {sink_name!r} cannot create {str(path)!r}: {exc.strerror}"
        )

    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise cannot(exc) from exc
    if st is not None:
        reason = untrusted_reason(st, path)
        if reason is not None:
            raise refusal(sink_name)(f"refusing its temporary file: {reason}")
        path.unlink(missing_ok=True)  # our own leftover from an interrupted run
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, OWNER_ONLY)
    except FileExistsError:
        raise refusal(sink_name)(
            f"its temporary file {path} was created by someone else while it was being "
            f"created; another process is writing to the folder {path.parent} — give the "
            f"sink a path in a folder only you can write to"
        ) from None
    except OSError as exc:
        raise cannot(exc) from exc
    try:
        os.fchmod(fd, OWNER_ONLY)  # exact, whatever the umask
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def check_complete_tail(sink_name: str, path: Path, fh: BinaryIO) -> int:
    """Return the size of an append target after repairing a torn last line.

    A file that does not end in a newline was cut short by an interrupted write (a crash
    between ``flush()`` calls). Those bytes were never fsynced before a checkpoint, so the
    records they belong to are re-emitted on resume: the partial line is cut off (and a
    warning logged) rather than glued to new data or blocking the resume.
    """
    size = os.fstat(fh.fileno()).st_size
    if not size:
        return 0
    with open(path, "rb") as reader:
        reader.seek(size - 1)
        if reader.read(1) == b"\n":
            return size
        keep = _last_newline_end(reader, size)
    os.truncate(path, keep)
    fh.seek(0, os.SEEK_END)
    log.warning(
        "sink %r: cut %d byte(s) of an incomplete last line from %s (an interrupted write; "
        "the records are re-emitted from the last checkpoint)", sink_name, size - keep, path,
    )
    return keep


def _last_newline_end(reader: BinaryIO, size: int) -> int:
    """Offset just after the last newline before ``size`` (0 if there is none)."""
    pos = size
    chunk = 64 * 1024
    while pos > 0:
        start = max(0, pos - chunk)
        reader.seek(start)
        data = reader.read(pos - start)
        idx = data.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


async def sync_file(fh: BinaryIO) -> None:
    """Push Python's buffer to the OS and fsync, so the data survives a crash."""
    fh.flush()
    # fsync can take milliseconds on real disks; keep the event loop free meanwhile.
    await asyncio.to_thread(os.fsync, fh.fileno())



class TextFileSink(BaseSink):
    """A sink appending lines to one open file: ``flush()`` fsyncs, ``close()`` flushes,
    fsyncs and closes (idempotent; the file is closed even if the flush fails)."""

    _fh: BinaryIO | None = None

    async def flush(self) -> None:
        self._check_usable("flush")
        assert self._fh is not None
        await sync_file(self._fh)

    async def close(self) -> None:
        """Flush, fsync and close the file. Idempotent; cleanup errors re-raise after closing."""
        if self._state is SinkState.CLOSED:
            return
        try:
            if self._state is SinkState.OPEN:
                await self.flush()
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            await super().close()


def mode_from(sink_name: str, mode: str | None, append: bool | None) -> str:
    """The file mode from ``mode=`` (preferred) or upstream's ``append=``."""
    if append is not None and not isinstance(append, bool):
        raise TypeError(f"sink {sink_name!r}: append must be True or False; got {append!r}")
    if append is None:
        return "w" if mode is None else mode
    implied = "a" if append else "w"
    if mode is not None and mode != implied:
        raise TypeError(
            f"sink {sink_name!r}: append={append} and mode={mode!r} disagree — pass one of "
            f"them (mode='a' appends, mode='w' truncates)"
        )
    return implied
