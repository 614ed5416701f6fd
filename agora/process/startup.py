"""Why a worker could not start: its own traceback, captured, and a message that says what to do.

A worker is forked by the forkserver and then, before any Agora code runs in it,
re-imports the script that started the run (multiprocessing does this so that ``fn``
defined in that script can be found). If that import fails — typically a script that
runs its pipeline without the ``if __name__ == "__main__":`` guard — the worker dies
before it has a pipe to report on, and multiprocessing prints its traceback to the
shared stderr, interleaved with every other worker's.

So the forkserver preloads ``forkserver_hook``, which installs :func:`capture_excepthook`
there: an exception that kills an Agora worker during start-up (or the forkserver while
it preloads modules) is written to a private *report file* named after the dying
process's pid instead of stderr. The pool reads that report when it sees the death
(:func:`take_report`) and :func:`explain_death` turns it into one
``WorkerStartupError`` message: what failed, the worker's last traceback line, and the
fix. Failures *after* a worker runs Agora code (``fn`` cannot be unpickled) come over the
worker's pipe instead and are explained by :func:`explain_load_error`.
"""

from __future__ import annotations

import ast
import contextlib
import multiprocessing
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from agora._safe_files import OWNER_ONLY, sweep_files_of_dead_processes

__all__ = [
    "WORKER_NAME_PREFIX",
    "capture_excepthook",
    "explain_death",
    "explain_load_error",
    "importing_main",
    "last_line",
    "report_path",
    "sweep_stale_reports",
    "take_report",
    "write_report",
]

#: Every worker process is named ``agora-<middleware>-g<generation>-w<index>``.
WORKER_NAME_PREFIX = "agora-"
_REPORT_PREFIX = "agora-startup-"

_GUARD = 'if __name__ == "__main__":'


def report_path(pid: int) -> str:
    """Where the start-up report of process ``pid`` is written."""
    return os.path.join(tempfile.gettempdir(), f"{_REPORT_PREFIX}{pid}.txt")


def write_report(pid: int, text: str) -> None:
    # Owner-only, and never through a symlink someone planted in the shared temp dir.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(report_path(pid), flags, OWNER_ONLY)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def take_report(pid: int | None) -> str:
    """The report process ``pid`` left (removed once read); ``""`` when there is none."""
    if pid is None:
        return ""
    path = report_path(pid)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, encoding="utf-8", errors="replace") as report:
        if os.fstat(fd).st_uid != os.getuid():
            return ""  # not written by one of our processes: neither trusted nor removed
        text = report.read()
    with contextlib.suppress(OSError):
        os.unlink(path)
    return text


def sweep_stale_reports() -> int:
    """Remove reports of processes that are gone (left when a driver was killed before
    it read them); return how many."""
    return sweep_files_of_dead_processes(tempfile.gettempdir(), _report_creator)


def _report_creator(name: str) -> int | None:
    if not (name.startswith(_REPORT_PREFIX) and name.endswith(".txt")):
        return None
    pid_text = name[len(_REPORT_PREFIX) : -len(".txt")]
    return int(pid_text) if pid_text.isdigit() else None


def last_line(text: str) -> str:
    """The last non-empty line of a traceback (``"RuntimeError: boom"``)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _frames(tb: TracebackType | None) -> list[tuple[str, str]]:
    return [(f.filename, f.name) for f in traceback.extract_tb(tb)]


def _through_forkserver(frames: list[tuple[str, str]], name: str) -> bool:
    return any(f.endswith("forkserver.py") and n == name for f, n in frames)


def capture_excepthook(
    previous: Callable[[type[BaseException], BaseException, TracebackType | None], Any],
) -> Callable[[type[BaseException], BaseException, TracebackType | None], None]:
    """An excepthook for the forkserver: the exception that kills a starting Agora
    worker, or the forkserver itself while preloading, goes to :func:`report_path`;
    anything else (another library's processes) goes to ``previous`` unchanged."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        frames = _frames(tb)
        ours = multiprocessing.current_process().name.startswith(WORKER_NAME_PREFIX)
        preloading = _through_forkserver(frames, "main") and not _through_forkserver(
            frames, "_serve_one"
        )
        if ours or preloading:
            try:
                write_report(os.getpid(), "".join(traceback.format_exception(exc_type, exc, tb)))
                return
            except OSError:
                pass  # cannot write a report: print it as usual rather than lose it
        previous(exc_type, exc, tb)

    return hook


def importing_main() -> bool:
    """True while this process re-imports the main script to become a worker (starting
    processes then can only fail: the script lacks the ``__main__`` guard)."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _main_path() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return os.path.abspath(path) if path else None


def _has_guard(path: str) -> bool | None:
    """Whether the script at ``path`` has a top-level ``if __name__ == "__main__":``
    (None when it cannot be read or parsed)."""
    try:
        with open(path, encoding="utf-8") as script:
            tree = ast.parse(script.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = {
                getattr(n, "id", None) for n in (node.test.left, *node.test.comparators)
            }
            values = {
                getattr(n, "value", None) for n in (node.test.left, *node.test.comparators)
            }
            if "__name__" in names and "__main__" in values:
                return True
    return False


def explain_death(cause: str, report: str) -> str:
    """The message for a worker that died before reporting ready.

    ``cause`` says how it died (exit status); ``report`` is its captured traceback."""
    error = f" (its error: {last_line(report)})" if report else ""
    if "_fixup_main_from_path" not in report and "_fixup_main_from_name" not in report:
        return f"a starting {cause}{error}"
    path = _main_path()
    script = f"the script {path}" if path else "the main script"
    if path and _has_guard(path) is False:
        script += f", which has no `{_GUARD}` guard"
    return (
        f"a starting {cause} while re-importing {script}{error}. Workers re-import the "
        f"main script before they run fn: put the code that builds and runs the pipeline "
        f"under `{_GUARD}` so that importing the script has no side effects, and define fn "
        "at the top level of an importable module (or of the script)"
    )


def explain_load_error(fn_qualname: str, fn_module: str, summary: str) -> str:
    """The message for a worker that could not unpickle ``fn`` (``summary`` is the
    worker's ``"ExcType: message"``)."""
    what = f"{fn_module}.{fn_qualname}"
    if fn_module == "__main__" and _main_path() is None:
        return (
            f"{what} is defined in an interactive session (python -c, stdin, a REPL or a "
            f"notebook), whose __main__ workers cannot import ({summary}) — move fn into a "
            "module file and import it from there"
        )
    if summary.startswith(("ModuleNotFoundError", "ImportError")):
        return (
            f"{what} cannot be imported in a worker ({summary}) — workers import fn's "
            "module by name: make it importable from the worker's sys.path (install the "
            "package, or add its directory to PYTHONPATH)"
        )
    if summary.startswith("AttributeError") and "Can't get attribute" in summary:
        where = "the script" if fn_module == "__main__" else f"module {fn_module!r}"
        return (
            f"{what} is not a top-level name of {where} when a worker imports it "
            f"({summary}) — define fn at module top level, not inside the `{_GUARD}` "
            "block, a function or a class, and not at run time"
        )
    return (
        f"importing fn's module {fn_module!r} in a fresh worker process failed ({summary}) "
        "— the module must import cleanly in a new interpreter: no dependence on state the "
        "driver set up before importing it"
    )
