"""The folder layout of ``ParquetSink``: one Parquet file per sealed part, committed by a
manifest that resumes trust, so that no row is ever read back or written twice."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from agora._safe_files import fsync_dir, open_trusted, remove_if_ours, untrusted_reason
from agora.sinks._files import UnsafeFileError, refusal
from agora.sinks._parquet_parts import HashingWriter

__all__ = ["MANIFEST_NAME", "PARTIAL_NAME", "DatasetLedger", "DatasetPart", "check_layout"]

#: The manifest and the file being written start with ``_`` and ``.``: dataset readers
#: (pyarrow, Spark, DuckDB, polars) skip such names, so they never read either.
MANIFEST_NAME = "_agora_manifest.json"
PARTIAL_NAME = ".agora-partial"  # no .parquet suffix: a `*.parquet` glob never matches it
_FORMAT = "agora-parquet-dataset"
_VERSION = 1
_PART_PREFIX = "part-"
_PART_SUFFIX = ".parquet"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetPart:
    """One committed part: its file name, size, SHA-256 and row count, and the inode and
    modification time it had when sealed (so a resume can recognise it from ``lstat``
    alone, without reading it)."""

    name: str
    size: int
    sha256: str
    rows: int
    inode: int
    mtime_ns: int


def part_name(index: int) -> str:
    return f"{_PART_PREFIX}{index:06d}{_PART_SUFFIX}"


def _index(name: str) -> int | None:
    core = name[len(_PART_PREFIX):-len(_PART_SUFFIX)]
    if name.startswith(_PART_PREFIX) and name.endswith(_PART_SUFFIX) and core.isdigit():
        return int(core)
    return None


def check_layout(sink_name: str, path: Path, layout: str, file_manifest: Path) -> None:
    """Refuse an output of the other layout at ``path`` (``file_manifest``: where the
    single-file layout records its unmerged parts), saying which ``layout=`` continues it."""
    if layout == "file" and os.path.isdir(path):
        raise ValueError(
            f"sink {sink_name!r}: {path} is a folder (the output of layout='dataset'); pass "
            f"layout='dataset' to continue it, or choose another path"
        )
    if layout != "dataset":
        return
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(
            f"sink {sink_name!r}: {path} is a single Parquet file (the output of "
            f"layout='file'), but this sink writes a dataset folder at that path; pass "
            f"layout='file' to continue that file, or move it away (it stays a readable "
            f"Parquet file) and run again"
        )
    if os.path.lexists(file_manifest):
        raise ValueError(
            f"sink {sink_name!r}: {file_manifest} records parts that a run with "
            f"layout='file' sealed and never merged into {path}; resume that run with "
            f"layout='file' so its rows are not lost, then switch layouts"
        )


def _visible(name: str) -> bool:
    """Whether dataset readers would read an entry of that name."""
    return not name.startswith((".", "_"))


class DatasetLedger:
    """The committed parts of one ``ParquetSink`` writing a dataset folder.

    Sealing a part: the hidden partial file (complete, footer written, fsynced) is recorded
    in the manifest as *pending* (name, size, hash, rows, inode), then renamed to its
    visible name; the next manifest write — the next seal, or ``close()`` — lists it as
    committed. The manifest is replaced atomically. So a reader scanning the folder only
    ever sees complete Parquet files, and after a crash the manifest knows every visible
    part: a pending part that reached its visible name is kept (its rows may be covered by
    a checkpoint; losing them is not an option, so at most the rows since the last
    checkpoint are repeated), one that did not is dropped (its rows were never covered).

    Opening never reads a committed part: each is recognised by ``lstat`` (a regular file
    of this user that group and others cannot write, with the recorded size, inode and
    modification time). Only a part whose inode or time changed — a folder restored from
    a backup — is hashed, and accepted if its SHA-256 matches. A missing or altered part,
    or a visible file the manifest does not list, fails ``open()`` with an error naming
    it and what to do: skipping the first would lose rows, adopting the second would
    publish rows this sink never wrote.
    """

    def __init__(self, folder: Path, sink_name: str, *, fsync: bool = True) -> None:
        self.folder = folder
        self.sink_name = sink_name
        self.fsync = fsync
        self.manifest_path = folder / MANIFEST_NAME
        self.partial_path = folder / PARTIAL_NAME
        self.schema: pa.Schema | None = None
        self._parts: list[DatasetPart] = []
        self._stale: list[DatasetPart] = []  # a fresh sink's earlier parts, removed at begin()
        self._next = 0

    @property
    def parts(self) -> tuple[DatasetPart, ...]:
        return tuple(self._parts)

    def _refuse(self, message: str) -> Exception:
        return refusal(self.sink_name)(message)

    def _damaged(self, message: str) -> ValueError:
        return ValueError(
            f"sink {self.sink_name!r}: {message}. The rows flushed before the last checkpoint "
            f"are in the parts {self.manifest_path} lists; restore the file, or delete the "
            f"folder {self.folder} and reset the run's checkpoint so the source is read again"
        )

    # -- opening ---------------------------------------------------------------------------
    def start(self, continuing: bool) -> None:
        """Called by ``open()``, before anything in the folder is changed (it is created
        if missing). ``continuing``: adopt the committed parts (checked by ``lstat``, never
        read); otherwise :meth:`begin` starts the dataset over. A visible file the
        manifest does not list, or a damaged part or manifest, raises here."""
        if not os.path.isdir(self.folder):
            try:
                os.mkdir(self.folder, 0o700)
            except OSError as exc:
                raise type(exc)(
                    exc.errno, f"sink {self.sink_name!r} cannot create its output folder "
                    f"{str(self.folder)!r}: {exc.strerror} — create the parent folder first or "
                    f"fix the path",
                ) from exc
            self._sync_dir(self.folder.parent if str(self.folder.parent) else Path("."))
        # Temporary manifests of a run killed mid-write: only this sink writes them.
        for leftover in self.folder.glob(f"{MANIFEST_NAME}.agora-tmp-*"):
            remove_if_ours(leftover)
        pending = self._load()
        if pending is not None:
            self._settle(pending)
        self._refuse_strays()
        self._stale = []
        if continuing:
            self._parts = [self._recognise(p) for p in self._parts]
        else:
            self._stale, self._parts, self.schema = self._parts, [], None
        self._next = max((_index(p.name) or 0 for p in self._parts), default=-1) + 1

    def begin(self) -> None:
        """Called once ``open()`` can no longer fail otherwise: a fresh sink's earlier
        parts are removed, and the manifest is rewritten (any pending part settled)."""
        for part in self._stale:
            remove_if_ours(self.folder / part.name)
        self._stale = []
        self._write()

    def _load(self) -> DatasetPart | None:
        """Read the manifest (if any); return its pending part."""
        self._parts, self.schema = [], None
        try:
            fd, _ = open_trusted(self.manifest_path, os.O_RDONLY, what="dataset manifest",
                                 error=self._refuse, create=False)
        except UnsafeFileError:
            if not os.path.lexists(self.manifest_path):
                return None
            raise
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read()
        try:
            data = json.loads(raw)
            if data.get("format") != _FORMAT or data.get("version") != _VERSION:
                raise ValueError(f"format/version {data.get('format')!r}/{data.get('version')!r}")
            self._parts = [self._entry(p) for p in data["parts"]]
            schema = data.get("schema")
            self.schema = None if schema is None else pa.ipc.read_schema(
                pa.py_buffer(base64.b64decode(schema)))
            pending = data.get("pending")
            return None if pending is None else self._entry(pending)
        except (ValueError, TypeError, KeyError, AttributeError, pa.ArrowInvalid) as exc:
            raise self._damaged(f"its dataset manifest {self.manifest_path} is damaged ({exc})") \
                from exc

    @staticmethod
    def _entry(item: Any) -> DatasetPart:
        part = DatasetPart(str(item["name"]), int(item["size"]), str(item["sha256"]),
                           int(item["rows"]), int(item["inode"]), int(item["mtime_ns"]))
        if _index(part.name) is None:
            raise ValueError(f"unexpected part name {part.name!r}")
        return part

    def _settle(self, pending: DatasetPart) -> None:
        """A run died while sealing ``pending``: keep it if it reached its visible name."""
        try:
            st = os.lstat(self.folder / pending.name)
        except FileNotFoundError:
            return  # died before the rename: its rows were never covered by a checkpoint
        if (st.st_size, st.st_ino) == (pending.size, pending.inode):
            self._parts.append(pending)

    def _refuse_strays(self) -> None:
        listed = {p.name for p in self._parts}
        strays = sorted(e.name for e in os.scandir(self.folder)
                        if _visible(e.name) and e.name not in listed)
        if strays:
            shown = ", ".join(strays[:5]) + (f" and {len(strays) - 5} more" if len(strays) > 5
                                              else "")
            raise ValueError(
                f"sink {self.sink_name!r}: the output folder {self.folder} holds {shown}, "
                f"which its manifest {MANIFEST_NAME} does not list; dataset readers would "
                f"read them as part of the output — move them out of the folder (or choose "
                f"another path) and run again"
            )

    def _recognise(self, part: DatasetPart) -> DatasetPart:
        path = self.folder / part.name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise self._damaged(f"part {path} listed in {self.manifest_path} is missing") \
                from None
        reason = untrusted_reason(st, path)
        if reason is not None:
            raise self._refuse(f"refusing the part file: {reason}")
        if st.st_size != part.size:
            raise self._damaged(f"part {path} has {st.st_size} bytes, not the {part.size} "
                                f"this sink sealed")
        if (st.st_ino, st.st_mtime_ns) == (part.inode, part.mtime_ns):
            return part
        # Moved or restored (another inode or time): accept it only with the same bytes.
        fd, _ = open_trusted(path, os.O_RDONLY, what="part file", error=self._refuse,
                             create=False)
        with os.fdopen(fd, "rb") as fh:
            if _sha256_of(fh) != part.sha256:
                raise self._damaged(f"part {path} is not the file this sink sealed (its "
                                    f"SHA-256 differs from {self.manifest_path})")
            st = os.fstat(fh.fileno())
        return replace(part, inode=st.st_ino, mtime_ns=st.st_mtime_ns)

    # -- writing ---------------------------------------------------------------------------
    def seal(self, written: HashingWriter, sealed: os.stat_result, rows: int,
             schema: pa.Schema) -> None:
        """Record the complete partial file (its bytes counted by ``written``, ``sealed``
        its status) as pending, then give it the next free part name."""
        while os.path.lexists(self.folder / part_name(self._next)):
            self._next += 1  # never replace a file we did not record
        part = DatasetPart(part_name(self._next), written.size, written.hexdigest(), rows,
                           sealed.st_ino, sealed.st_mtime_ns)
        self.schema = schema
        self._write(pending=part)
        os.replace(self.partial_path, self.folder / part.name)
        self._sync_dir(self.folder)
        self._parts.append(part)
        self._next += 1

    def commit(self, schema: pa.Schema | None) -> None:
        """List every part as committed (``close()``)."""
        if schema is not None:
            self.schema = schema
        self._write()

    def _write(self, pending: DatasetPart | None = None) -> None:
        data = {
            "format": _FORMAT,
            "version": _VERSION,
            "schema": None if self.schema is None else base64.b64encode(
                self.schema.serialize().to_pybytes()).decode("ascii"),
            "parts": [asdict(p) for p in self._parts],
            "pending": None if pending is None else asdict(pending),
        }
        self._replace(json.dumps(data, separators=(",", ":")).encode())

    def _replace(self, data: bytes) -> None:
        """Replace the manifest atomically (a private temporary file renamed over it; a
        link planted at its name is replaced, never written through)."""
        fd, tmp = tempfile.mkstemp(prefix=f"{MANIFEST_NAME}.agora-tmp-", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, self.manifest_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._sync_dir(self.folder)

    def _sync_dir(self, folder: Path) -> None:
        if self.fsync:
            fsync_dir(folder)


def _sha256_of(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
