"""Agora's own files in folders other users may write to: opened without following links,
created exclusively and owner-only, refused when another user could control them."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "OWNER_ONLY",
    "PRIVATE_DIR",
    "ErrorFactory",
    "check_trusted",
    "fsync_dir",
    "make_private_dirs",
    "open_trusted",
    "process_alive",
    "remove_if_ours",
    "same_file",
    "sweep_files_of_dead_processes",
    "untrusted_reason",
    "write_private_atomically",
]

OWNER_ONLY = 0o600
PRIVATE_DIR = 0o700

# What Agora never accepts in its own files: bits that let group or others change them.
_WIDE_WRITE = stat.S_IWGRP | stat.S_IWOTH

ErrorFactory = Callable[[str], Exception]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _user(uid: int) -> str:
    try:
        import pwd  # POSIX only; a missing entry is fine, the uid says enough

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def untrusted_reason(st: os.stat_result, path: Path) -> str | None:
    """Why the file with status ``st`` (an ``lstat``) at ``path`` must not be used as one of
    Agora's own files, with the fix; None when it may be: a regular file owned by the user
    running Agora that neither group nor others can write."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return (
            f"{path} is a symbolic link (to {target}); Agora never follows a link to its own "
            f"files, so a link planted in a shared folder cannot redirect them — point Agora "
            f"at the real file, or remove the link"
        )
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        return f"{path} is {kind}, not a regular file — remove it or choose another path"
    me = os.geteuid()
    if st.st_uid != me:
        return (
            f"{path} is owned by {_user(st.st_uid)}, not by {_user(me)} who runs Agora; a "
            f"file another user controls could feed this run forged state or receive its "
            f"data — choose another path, or if you trust its content take it over "
            f"(`chown {me} {path}`)"
        )
    if st.st_mode & _WIDE_WRITE:
        return (
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can write it, "
            f"so another user could alter it — `chmod 600 {path}`, or choose another path"
        )
    return None


def check_trusted(path: Path, what: str, error: ErrorFactory) -> os.stat_result | None:
    """``lstat`` ``path``: None if nothing is there, its status if it is trusted (see
    :func:`untrusted_reason`); otherwise raise ``error`` naming ``what`` (e.g. "checkpoints
    file"), the file, its owner or mode, and the fix."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    reason = untrusted_reason(st, path)
    if reason is not None:
        raise error(f"refusing the {what}: {reason}")
    return st


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def fsync_dir(directory: Path) -> None:
    """Make a directory entry (a created, linked, renamed or removed file) durable."""
    fd = os.open(directory if str(directory) else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_link(path: Path, what: str, error: ErrorFactory) -> Exception:
    try:
        st = os.lstat(path)
    except OSError as exc:
        return error(f"cannot open the {what} {path}: {exc}")
    return error(f"refusing the {what}: {untrusted_reason(st, path) or f'{path} changed'}")


def open_trusted(
    path: Path,
    flags: int,
    *,
    what: str,
    error: ErrorFactory,
    create: bool = True,
    durable: bool = True,
) -> tuple[int, bool]:
    """Open ``path`` with ``flags`` (``os.O_RDONLY``, ``os.O_RDWR | os.O_APPEND``, …) as one of
    Agora's own files. Returns ``(fd, created)``.

    A missing file is created exclusively (``O_CREAT | O_EXCL``) with mode 0600 — whatever
    the umask — and, with ``durable``, its directory entry is fsynced (with ``create=False``
    a missing file is an error).
    An existing file is opened without following a symbolic link and without blocking on
    a named pipe, then refused (the descriptor closed) unless it is a regular file owned by
    this user that group and others cannot write. Every refusal raises ``error(message)``
    naming ``what``, the file and the fix; nothing is ever read or written through a
    refused file.
    """
    base = flags | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):  # the file may vanish between the two opens; then create it
        if create:
            try:
                fd = os.open(path, base | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
            except FileExistsError:
                pass
            except OSError as exc:
                raise error(f"cannot create the {what} {path}: {exc}") from exc
            else:
                try:
                    os.fchmod(fd, OWNER_ONLY)  # a umask can only narrow it; make it exact
                    if durable:
                        fsync_dir(path.parent)
                except BaseException:
                    os.close(fd)
                    raise
                return fd, True
        try:
            fd = os.open(path, base | os.O_NONBLOCK)
        except FileNotFoundError:
            if create:
                continue
            raise error(f"the {what} {path} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EMLINK):
                raise _describe_link(path, what, error) from None
            raise error(f"cannot open the {what} {path}: {exc}") from exc
        try:
            reason = untrusted_reason(os.fstat(fd), path)
            if reason is not None:
                raise error(f"refusing the {what}: {reason}")
            # O_NONBLOCK only guarded the open against a planted pipe; plain I/O from now on.
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd, False
    raise error(f"cannot open the {what} {path}: it keeps disappearing — is another "
                f"process deleting it?")


def make_private_dirs(directory: Path, *, what: str, error: ErrorFactory) -> list[Path]:
    """Create the missing folders of ``directory`` with mode 0700 and return them.

    Only folders that do not exist are created (and made exactly 0700, whatever the
    umask); an existing folder is never changed. A path component that exists but is not
    a folder raises ``error`` naming it.
    """
    missing: list[Path] = []
    current = directory if str(directory) else Path(".")
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            continue  # made in the same instant by someone else: theirs, left as it is
        except OSError as exc:
            raise error(
                f"cannot create the folder {folder} for the {what}: {exc} — create it "
                f"yourself or choose another path"
            ) from exc
        try:
            # O_NOFOLLOW: if the new folder was swapped for a link, chmod nothing.
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise error(f"the folder {folder} for the {what} changed while it was being "
                        f"created ({exc}); is another process racing for it?") from exc
        try:
            os.fchmod(fd, PRIVATE_DIR)
        finally:
            os.close(fd)
        fsync_dir(folder.parent if str(folder.parent) else Path("."))
        created.append(folder)
    if not directory.is_dir():
        raise error(
            f"cannot use {directory} as the folder of the {what}: it is not a folder — "
            f"choose another path"
        )
    return created


def write_private_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a private temporary file
    (created exclusively, 0600) in the same folder is written, fsynced and renamed onto
    ``path``. A link planted at ``path`` is replaced, never written through. A crash
    leaves either the old or the new content."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.agora-tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_if_ours(path: Path) -> bool:
    """Remove ``path`` if it is a regular file this user owns; True if removed. Anything
    else — missing, a link, another user's file — is left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return False
    path.unlink(missing_ok=True)
    return True


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists. Another user's process counts as alive: what it
    named after itself is not ours to judge."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_files_of_dead_processes(directory: str, creator: Callable[[str], int | None]) -> int:
    """Remove the files in ``directory`` whose creating process is gone; return how many.

    ``creator`` maps a file name to the pid it was named after, or None for a name that is
    not one of these files (left alone). A file of a live process is never touched; one
    that cannot be removed (already gone, not ours to remove) is skipped."""
    removed = 0
    for name in os.listdir(directory):
        pid = creator(name)
        if pid is None or process_alive(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed += 1
    return removed
