"""Shared-memory slots: where they live, how their space is reserved, and how they are swept.

A *slot* is a file in the shared-memory directory (``/dev/shm``, a tmpfs, so it is RAM)
that the main process and one worker both map. The main process creates, grows and
unlinks every slot; a worker only maps the paths it is told.

Slot layout: a 64-byte header, then the payload (64-byte aligned, as Arrow likes)::

    [magic u32][pad u32][seq i64][nbytes i64] ... padding to 64 ... [payload ...]

**Space is reserved, never assumed.** A slot file is sized with ``ftruncate``, which
only makes a sparse file: on a tmpfs with less free space than the slot, the first
write to a page that cannot be allocated kills the writer with SIGBUS — no exception,
no message. So every writer reserves the bytes it is about to write first
(:meth:`MappedSlot.reserve`, ``posix_fallocate``; where that is unsupported, by writing
zeros through the file descriptor, which fails with an ordinary ``ENOSPC``). A failed
reservation raises :class:`ShmFull`, and the batch takes the pipe instead (see
``transport.py`` and ``pool.py``). Reserved pages stay reserved for the slot's life, so
a slot reused for batches of the same size reserves nothing more.

The directory is :data:`DEFAULT_SHM_DIR` unless the ``AGORA_SHM_DIR`` environment
variable names another one (read when a pool starts): an internal setting for tests and
for hosts whose ``/dev/shm`` is too small to be useful.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import struct
import tempfile
import uuid

import pyarrow as pa

from agora._safe_files import OWNER_ONLY, sweep_files_of_dead_processes

__all__ = [
    "DEFAULT_SHM_DIR",
    "HEADER_SIZE",
    "SHM_DIR_ENV",
    "SLOT_PREFIX",
    "MappedSlot",
    "ShmFull",
    "Slot",
    "SlotTooSmall",
    "describe_space",
    "grown_capacity",
    "leftover_slot_paths",
    "reserve",
    "shm_dir",
    "sweep_stale_slots",
]

#: tmpfs when the OS has one (Linux); elsewhere a temp dir, which the page cache keeps hot.
DEFAULT_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
#: Environment variable naming another directory for slots (read when a pool starts).
SHM_DIR_ENV = "AGORA_SHM_DIR"
#: Every slot is named ``agora-slot-<creator pid>-<random>``, so slots of a crashed run
#: can be recognised (dead creator pid) and swept.
SLOT_PREFIX = "agora-slot-"
_SLOT_NAME = re.compile(rf"^{SLOT_PREFIX}(\d+)-[0-9a-f]+$")

HEADER_SIZE = 64
_HEADER = struct.Struct("<IIqq")
_MAGIC = 0x41474F52  # "AGOR"
#: Slots start at 1 MiB (a 10k-row batch of 8 columns is ~0.6 MB) and grow by doubling.
#: A roomy slot costs nothing extra: only the bytes a batch actually needs are reserved.
_MIN_CAPACITY = 1 << 20
#: Zero-filling chunk where posix_fallocate is unsupported: big enough to be fast, small
#: enough not to matter as a temporary allocation.
_ZERO_CHUNK = 1 << 20
#: posix_fallocate results that mean "this filesystem cannot do it", not "no space".
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def shm_dir() -> str:
    """The directory for slots: ``$AGORA_SHM_DIR`` if set, else :data:`DEFAULT_SHM_DIR`.

    Raises ``ValueError`` when the variable names something that is not a writable
    directory.
    """
    chosen = os.environ.get(SHM_DIR_ENV)
    if not chosen:
        return DEFAULT_SHM_DIR
    if not os.path.isdir(chosen) or not os.access(chosen, os.W_OK | os.X_OK):
        raise ValueError(
            f"{SHM_DIR_ENV} must name a writable directory (ideally a tmpfs); got "
            f"{chosen!r} — create it, or unset {SHM_DIR_ENV} to use {DEFAULT_SHM_DIR}"
        )
    return chosen


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def describe_space(directory: str) -> str:
    """``"'/dev/shm' (64.0 MiB, 3.2 MiB free)"`` — for messages about a full directory."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return repr(directory)
    size, free = st.f_frsize * st.f_blocks, st.f_frsize * st.f_bavail
    return f"{directory!r} ({_mib(size)}, {_mib(free)} free)"


class ShmFull(Exception):
    """The shared-memory directory cannot hold ``required`` more bytes of a slot."""

    def __init__(self, directory: str, required: int, errno_: int) -> None:
        self.directory = directory
        self.required = required
        self.errno = errno_
        super().__init__(
            f"shared memory {describe_space(directory)} cannot hold {_mib(required)} more "
            f"({os.strerror(errno_)}) — give it more room (docker run --shm-size=1g, or a "
            f"bigger tmpfs), or point {SHM_DIR_ENV} at a directory that has it"
        )


class SlotTooSmall(Exception):
    """A payload of ``required`` bytes does not fit the slot; grow it or send inline."""

    def __init__(self, required: int) -> None:
        super().__init__(f"payload needs {required} bytes")
        self.required = required


def reserve(fd: int, offset: int, length: int, directory: str) -> None:
    """Allocate ``[offset, offset + length)`` of the file ``fd`` so writes through a
    mapping of it cannot fault. Raises :class:`ShmFull` when there is no room."""
    if length <= 0:
        return
    fallocate = getattr(os, "posix_fallocate", None)
    while fallocate is not None:
        try:
            fallocate(fd, offset, length)
            return
        except InterruptedError:
            continue  # Python retries EINTR itself; a wrapper that does not gets a retry
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                break
            # ENOSPC, or anything else that leaves the range unbacked: never write it.
            raise ShmFull(directory, length, exc.errno or errno.ENOSPC) from None
    _zero_fill(fd, offset, length, directory)


def _zero_fill(fd: int, offset: int, length: int, directory: str) -> None:
    """Reserve by writing zeros (a filesystem without posix_fallocate). A write that
    finds no room fails with ENOSPC instead of faulting later in a mapping."""
    zeros = bytes(min(_ZERO_CHUNK, length))
    end = offset + length
    while offset < end:
        try:
            written = os.pwrite(fd, zeros[: min(len(zeros), end - offset)], offset)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
        except OSError as exc:
            raise ShmFull(directory, length, exc.errno or errno.ENOSPC) from None
        offset += written


def _round_capacity(nbytes: int) -> int:
    capacity = _MIN_CAPACITY
    while capacity < nbytes + HEADER_SIZE:
        capacity *= 2
    return capacity


def grown_capacity(required_payload: int) -> int:
    """The slot capacity to allocate for a payload of ``required_payload`` bytes."""
    return _round_capacity(required_payload + required_payload // 4)


class MappedSlot:
    """A mapping of one slot file. ``writable`` maps it read-write, else read-only.

    Used as-is by workers (which never create or unlink slots) and as the base of
    :class:`Slot` in the main process. A writable mapping keeps its file descriptor so
    that it can reserve space before writing (:meth:`reserve`).
    """

    def __init__(self, path: str, capacity: int, *, writable: bool) -> None:
        self.path = path
        self.capacity = capacity
        self.reserved = 0  # bytes from offset 0 this mapping has reserved
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            self._mm: mmap.mmap | None = mmap.mmap(fd, capacity, prot=prot)
        except BaseException:
            os.close(fd)
            raise
        if writable:
            self._fd: int | None = fd
        else:
            os.close(fd)
            self._fd = None
        self.view = memoryview(self._mm)
        # pyarrow wraps the whole mapping once; payload windows are slices of it.
        self.buffer = pa.py_buffer(self.view)

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    @property
    def payload_capacity(self) -> int:
        return self.capacity - HEADER_SIZE

    def reserve(self, payload_nbytes: int) -> None:
        """Make sure the header and the first ``payload_nbytes`` of payload are backed by
        memory before they are written. Raises :class:`ShmFull` (nothing was written)."""
        needed = min(self.capacity, HEADER_SIZE + payload_nbytes)
        if needed <= self.reserved:
            return
        if self._fd is None:
            raise ValueError(f"slot {self.path}: a read-only mapping cannot reserve space")
        reserve(self._fd, self.reserved, needed - self.reserved, self.directory)
        self.reserved = needed

    def payload(self, nbytes: int) -> memoryview:
        """The first ``nbytes`` of payload (a view; valid while the slot is mapped)."""
        return self.view[HEADER_SIZE : HEADER_SIZE + nbytes]

    def arrow_payload(self, nbytes: int) -> pa.Buffer:
        return self.buffer.slice(HEADER_SIZE, nbytes)

    def write_header(self, seq: int, nbytes: int) -> None:
        _HEADER.pack_into(self.view, 0, _MAGIC, 0, seq, nbytes)

    def read_header(self) -> tuple[int, int]:
        """``(seq, nbytes)``; ``(-1, -1)`` when the header was never written."""
        magic, _pad, seq, nbytes = _HEADER.unpack_from(self.view, 0)
        if magic != _MAGIC:
            return -1, -1
        return seq, nbytes

    def close(self) -> None:
        """Unmap. A caller may still hold a zero-copy view of the payload (a user's
        ``fn`` keeping its input batch); then the mapping lives until that view dies."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        mm, self._mm = self._mm, None
        if mm is None:
            return
        self.buffer = None
        with contextlib.suppress(BufferError):
            self.view.release()
            mm.close()


class Slot(MappedSlot):
    """A slot created and owned by the main process (read-write, unlinked on release).

    Creating one reserves only its header; raises :class:`ShmFull` (and leaves no file)
    when ``directory`` cannot hold even that.
    """

    def __init__(self, capacity: int, directory: str | None = None) -> None:
        capacity = _round_capacity(capacity)
        directory = directory if directory is not None else shm_dir()
        path = os.path.join(directory, f"{SLOT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
        try:
            os.ftruncate(fd, capacity)
        finally:
            os.close(fd)
        try:
            super().__init__(path, capacity, writable=True)
            self.reserve(0)
        except BaseException:
            self.close()
            os.unlink(path)
            raise
        self.write_header(-1, 0)

    def release(self) -> None:
        """Unlink the file and unmap. Idempotent. Processes that still map it (a worker
        being killed) keep their pages until they exit; nothing is left in the directory."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.close()


# ---------------------------------------------------------------------------- hygiene


def leftover_slot_paths(creator_pid: int | None = None, directory: str | None = None) -> list[str]:
    """Slot files in ``directory`` (default: :func:`shm_dir`), optionally only those
    created by ``creator_pid``."""
    directory = directory if directory is not None else shm_dir()
    found = []
    for name in os.listdir(directory):
        match = _SLOT_NAME.match(name)
        if match and (creator_pid is None or int(match.group(1)) == creator_pid):
            found.append(os.path.join(directory, name))
    return found


def _slot_creator(name: str) -> int | None:
    match = _SLOT_NAME.match(name)
    return int(match.group(1)) if match else None


def sweep_stale_slots(directory: str | None = None) -> int:
    """Unlink slots whose creator process is gone (a run killed with SIGKILL); return
    how many were removed. Slots of live processes are never touched."""
    return sweep_files_of_dead_processes(
        directory if directory is not None else shm_dir(), _slot_creator
    )
