"""The durable record of the part files a ``ParquetSink`` sealed, so that on resume it
adopts exactly those and nothing planted or stray next to its output."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from agora._safe_files import (
    fsync_dir,
    open_trusted,
    remove_if_ours,
    write_private_atomically,
)
from agora.sinks._files import UnsafeFileError, refusal

log = logging.getLogger("agora.sinks")

__all__ = ["HashingWriter", "PartLedger", "SealedPart"]

_MANIFEST_VERSION = 1
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SealedPart:
    """One part file as the sink sealed it: its file name, size and SHA-256."""

    name: str
    size: int
    sha256: str


class HashingWriter:
    """A write-only file object for pyarrow that counts and hashes every byte it passes
    on to ``fh``, so a part's size and hash are known without reading it back."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self.size += view.nbytes
        return self._fh.write(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self.closed = True  # the sink closes the real file itself, after fsync

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _sha256_of(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    fh.seek(0)
    while chunk := fh.read(_HASH_CHUNK):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest()


class PartLedger:
    """The parts one ``ParquetSink`` sealed, kept in an owner-only manifest next to its
    output (``.NAME.agora-parts.json``, replaced atomically: temp + fsync + rename).

    A part is recorded only after it was sealed (written, fsynced, renamed into place),
    so the manifest never lists a part that does not exist. On resume only listed parts
    are adopted, and only if their size and SHA-256 match; anything else that looks like
    a part is ignored with a warning and left in place. A listed part that is missing or
    altered is an error — its rows were flushed before a checkpoint, so skipping it would
    lose them. Before the merged output replaces the target, the manifest records its
    size and hash: a run killed after that rename but before the parts were removed is
    recognised, and the parts are not merged twice.
    """

    def __init__(self, target: Path, sink_name: str) -> None:
        self.target = target
        self.sink_name = sink_name
        self.manifest_path = target.with_name(f".{target.name}.agora-parts.json")
        self._prefix = f".{target.name}.agora-part-"
        self._parts: list[SealedPart] = []
        self._merged: SealedPart | None = None
        # (st_dev, st_ino) of each part known to be ours in this process: sealed here, or
        # hash-checked on adoption. Reopening one then needs no second hash.
        self._inodes: dict[str, tuple[int, int]] = {}
        self._next = 0

    @property
    def parts(self) -> tuple[SealedPart, ...]:
        return tuple(self._parts)

    def _path(self, name: str) -> Path:
        return self.target.with_name(name)

    def _refuse(self, message: str) -> Exception:
        return refusal(self.sink_name)(message)

    def _damaged(self, message: str) -> ValueError:
        return ValueError(
            f"sink {self.sink_name!r}: {message}. The rows flushed before the last checkpoint "
            f"are in the parts this sink sealed; restore the file, or delete "
            f"{self.manifest_path} and reset the run's checkpoint so the source is read again"
        )

    # -- opening ---------------------------------------------------------------------------
    def start(self, continuing: bool) -> None:
        """Called by ``open()``: adopt the recorded parts (``continuing``) or discard them
        (a fresh sink), warn about unrecorded part-like files, and pick the next index."""
        try:
            self._start(continuing)
        except UnsafeFileError:
            raise
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"sink {self.sink_name!r} cannot use its part files next to "
                f"{self.target}: {exc.strerror} ({exc.filename})",
            ) from exc

    def _start(self, continuing: bool) -> None:
        self._load()
        # Temporary manifests of a run killed mid-write: only this sink writes them.
        for leftover in self.manifest_path.parent.glob(f"{self.manifest_path.name}.agora-tmp-*"):
            remove_if_ours(leftover)
        if not continuing:
            self._discard()
        elif self._merged is not None and self._target_is(self._merged):
            self._discard()  # killed after the merged output was renamed into place
        else:
            self._merged = None
            for part in self._parts:
                self.open_part(part).close()  # verifies size and hash now, not at close()
        listed = {p.name for p in self._parts}
        indexes = [p.name[len(self._prefix):] for p in self._parts]
        for stray in self._part_like_files():
            indexes.append(stray.name[len(self._prefix):])
            if stray.name not in listed:
                log.warning(
                    "sink %r: ignoring %s: it is not a part this sink recorded sealing "
                    "(left by another process, or by a crash before it was recorded); left "
                    "in place — delete it if nothing needs it", self.sink_name, stray,
                )
        self._next = max((int(i) for i in indexes if i.isdigit()), default=-1) + 1

    def _part_like_files(self) -> list[Path]:
        parent = self.target.parent if str(self.target.parent) else Path(".")
        return sorted(p for p in parent.glob(f"{self._prefix}*")
                      if p.name[len(self._prefix):].isdigit())

    def _load(self) -> None:
        self._parts, self._merged, self._inodes = [], None, {}
        try:
            fd, _ = open_trusted(self.manifest_path, os.O_RDONLY, what="parts manifest",
                                 error=self._refuse, create=False)
        except UnsafeFileError:
            if not os.path.lexists(self.manifest_path):
                return
            raise
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read()
        try:
            data = json.loads(raw)
            if data.get("version") != _MANIFEST_VERSION or data.get("target") != self.target.name:
                raise ValueError(f"version/target {data.get('version')!r}/{data.get('target')!r}")
            self._parts = [self._entry(p) for p in data["parts"]]
            merged = data.get("merged")
            self._merged = None if merged is None else self._entry(merged, merged=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._damaged(f"its parts manifest {self.manifest_path} is damaged ({exc})") \
                from exc

    def _entry(self, item: Any, *, merged: bool = False) -> SealedPart:
        part = SealedPart(str(item["name"]), int(item["size"]), str(item["sha256"]))
        suffix = part.name[len(self._prefix):]
        expected = part.name == self.target.name if merged else (
            part.name.startswith(self._prefix) and suffix.isdigit())
        if not expected:
            raise ValueError(f"unexpected file name {part.name!r}")
        return part

    def _target_is(self, expected: SealedPart) -> bool:
        try:
            with open(self.target, "rb") as fh:
                if os.fstat(fh.fileno()).st_size != expected.size:
                    return False
                return _sha256_of(fh) == expected.sha256
        except FileNotFoundError:
            return False

    def _discard(self) -> None:
        """Remove the recorded parts (ours only) and the manifest."""
        for part in self._parts:
            remove_if_ours(self._path(part.name))
        if remove_if_ours(self.manifest_path):
            fsync_dir(self.manifest_path.parent)
        self._parts, self._merged, self._inodes = [], None, {}

    def open_part(self, part: SealedPart) -> BinaryIO:
        """Open a recorded part for reading, checked to be the file the sink sealed (never
        through a link; owned by this user; same size and hash, or the same inode when
        already checked in this process). ValueError if it is missing or altered."""
        path = self._path(part.name)
        try:
            fd, _ = open_trusted(path, os.O_RDONLY, what="part file", error=self._refuse,
                                 create=False)
        except UnsafeFileError:
            if not os.path.lexists(path):
                raise self._damaged(f"part {path} listed in {self.manifest_path} is missing") \
                    from None
            raise
        fh = os.fdopen(fd, "rb")
        try:
            st = os.fstat(fd)
            known = self._inodes.get(part.name)
            if st.st_size != part.size or (
                (st.st_dev, st.st_ino) != known if known else _sha256_of(fh) != part.sha256
            ):
                raise self._damaged(
                    f"part {path} is not the file this sink sealed (size or SHA-256 differs "
                    f"from {self.manifest_path})"
                )
            self._inodes[part.name] = (st.st_dev, st.st_ino)
        except BaseException:
            fh.close()
            raise
        return fh

    # -- writing ---------------------------------------------------------------------------
    def seal(self, partial: Path, written: HashingWriter, sealed: os.stat_result) -> None:
        """Rename the fsynced ``partial`` (its bytes counted by ``written``; ``sealed`` its
        status) to the next free part name and record it durably."""
        while os.path.lexists(self._path(f"{self._prefix}{self._next:06d}")):
            self._next += 1  # never replace a file we did not record
        name = f"{self._prefix}{self._next:06d}"
        os.replace(partial, self._path(name))
        self._next += 1
        fsync_dir(self.manifest_path.parent)
        self._parts.append(SealedPart(name, written.size, written.hexdigest()))
        self._inodes[name] = (sealed.st_dev, sealed.st_ino)
        self._write()

    def record_merged(self, written: HashingWriter) -> None:
        """Record the merged output (size, hash) before it is renamed onto the target."""
        self._merged = SealedPart(self.target.name, written.size, written.hexdigest())
        self._write()

    def finish(self) -> None:
        """The merged output is in place: remove the parts, then the manifest."""
        for part in self._parts:
            path = self._path(part.name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) == self._inodes.get(part.name):
                path.unlink()  # only the file checked or sealed in this process
        fsync_dir(self.manifest_path.parent)
        remove_if_ours(self.manifest_path)
        fsync_dir(self.manifest_path.parent)
        self._parts, self._merged, self._inodes = [], None, {}

    def _write(self) -> None:
        data = {
            "version": _MANIFEST_VERSION,
            "target": self.target.name,
            "parts": [asdict(p) for p in self._parts],
            "merged": None if self._merged is None else asdict(self._merged),
        }
        write_private_atomically(self.manifest_path, json.dumps(data, indent=1).encode())
