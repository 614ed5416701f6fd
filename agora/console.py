"""Where the ``agora`` command's output goes: one JSON document or human text on stdout,
one error line (and a traceback only on request) on stderr."""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Console",
    "ProgressLine",
    "UsageError",
    "first_sentence",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: What a shell reports for a program killed by SIGPIPE (128 + 13): ``agora dlq list … |
#: head`` ends like ``cat … | head`` does, so ``set -o pipefail`` scripts see the same.
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """Bad command-line input (a wrong path, name or option): one line on stderr, exit 2."""


class Console:
    """The output of one command.

    Without ``--json``, human text goes to stdout. With ``--json``, stdout carries exactly
    one JSON document — the command's result, or for a failure
    ``{"error": {"type", "message", "exit_code"}, "summary": … | null}`` — and all human
    text goes to stderr. Errors are one line on stderr (``agora: …``); the traceback
    follows only with ``--traceback``/``-v``.
    """

    def __init__(self, *, as_json: bool = False, show_traceback: bool = False,
                 stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.as_json = as_json
        self.show_traceback = show_traceback
        self._stdout = stdout
        self._stderr = stderr
        self.document_written = False

    @property
    def stdout(self) -> TextIO:  # resolved late: tests swap sys.stdout
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    def say(self, text: Any = "") -> None:
        """Human text: stdout normally, stderr when stdout is reserved for JSON."""
        print(text, file=self.stderr if self.as_json else self.stdout, flush=True)

    def note(self, text: Any) -> None:
        """A remark that is never the command's output (always stderr)."""
        print(text, file=self.stderr, flush=True)

    def document(self, data: Any) -> None:
        """Print the command's one JSON document on stdout."""
        if self.document_written:  # a second document would break every JSON reader
            raise RuntimeError("a command printed two JSON documents; this is a bug in agora")
        self.document_written = True
        print(json.dumps(data, indent=2, default=str), file=self.stdout, flush=True)

    def result(self, data: Any, text: Any) -> None:
        """The command's result: ``data`` as JSON with ``--json``, else ``text``."""
        if self.as_json:
            self.document(data)
        else:
            print(text, file=self.stdout, flush=True)

    def fail(self, message: str, *, exit_code: int, error_type: str,
             summary: Any = None, exc: BaseException | None = None, hint: str = "") -> int:
        """Report a failure and return ``exit_code``: the partial ``summary`` (a
        ``PipelineRunSummary``) if there is one, one ``agora: message`` line on stderr,
        the traceback of ``exc`` with ``--traceback``, and with ``--json`` the error
        document on stdout (unless the command already printed its document). ``hint`` is
        added to the stderr line only (it speaks to a person, not a script)."""
        if self.show_traceback and exc is not None:
            traceback.print_exception(exc, file=self.stderr)
        if self.as_json:
            if not self.document_written:
                self.document({
                    "error": {"type": error_type, "message": message, "exit_code": exit_code},
                    "summary": None if summary is None else summary.to_dict(),
                })
        elif summary is not None:
            print(summary, file=self.stdout, flush=True)
        print(f"agora: {message}{hint}", file=self.stderr, flush=True)
        return exit_code


class ProgressLine:
    """A one-line live display on a TTY (stderr); silent off a TTY or with CI set (then
    only the final summary is printed)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.enabled = stream.isatty() and not os.environ.get("CI")

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        rate = p.consumed / p.elapsed if p.elapsed > 0 else 0.0
        self.stream.write(
            f"\r{p.elapsed:7.1f}s  {rate:>12,.0f} rec/s  consumed {p.consumed:,}  "
            f"written {p.written:,}  errored {p.errored:,}  dropped {p.dropped:,}\x1b[K"
        )
        if p.done:
            self.stream.write("\n")
        self.stream.flush()


def first_sentence(exc: BaseException) -> str:
    """What the store found wrong, without the recovery advice meant for a run (here the
    user most likely pointed at the wrong file)."""
    return str(exc).split(". ", 1)[0].rstrip(".")
