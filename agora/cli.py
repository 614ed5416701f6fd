"""The agora command: run, explain, demo, checkpoint, dlq, conformance — made for
scripts as much as for people.

Exit codes: 0 ok, 1 the run failed, 2 usage error, 130 interrupted, 141 stdout closed
early (a broken pipe). ``--json`` prints exactly one JSON document on stdout, failures
included; human text then goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from agora.console import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Console,
    ProgressLine,
    UsageError,
)
from agora.cli_dlq import DLQ_STAGES, cmd_dlq
from agora.console import first_sentence
from agora.targets import load_target

__all__ = ["ProgressLine", "load_target", "main"]



def _run_bound(bound: Any, max_records: int | None, out: Console | bool) -> int:
    """Run ``bound`` and report it on ``out`` (a bool means ``--json``): the summary and
    exit 0; or the partial summary, one error line and exit 1 (130 when interrupted)."""
    from agora import PipelineError

    if not isinstance(out, Console):
        out = Console(as_json=out)
    progress = ProgressLine(sys.stderr)
    try:
        summary = asyncio.run(bound.run(max_records, progress=progress))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        partial = bound.last_summary
        stop = partial.interruption if partial is not None else None
        how = f"by {stop.reason}" if stop is not None and stop.reason else ""
        return out.fail(
            f"interrupted {how}; the checkpoint covers every record handled before the stop — "
            f"run again to resume".replace("  ", " "),
            exit_code=EXIT_INTERRUPTED, error_type="KeyboardInterrupt", summary=partial, exc=exc)
    except PipelineError as exc:
        if bound.last_summary is None:  # rejected at plan time: nothing was started
            return out.fail(f"invalid pipeline: {exc}", exit_code=EXIT_USAGE,
                            error_type=type(exc).__name__, exc=exc)
        return out.fail(f"run failed: {type(exc).__name__}: {exc}", exit_code=EXIT_FAILED,
                        error_type=type(exc).__name__, summary=bound.last_summary, exc=exc)
    except Exception as exc:  # the run's original exception: report and exit 1
        hint = "" if out.show_traceback else " (--traceback shows where)"
        return out.fail(f"run failed: {type(exc).__name__}: {exc}", exit_code=EXIT_FAILED,
                        error_type=type(exc).__name__, summary=bound.last_summary, exc=exc,
                        hint=hint)
    out.result(summary.to_dict(), summary)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    bound = load_target(args.target)
    return _run_bound(bound, args.max_records, out)


def cmd_explain(args: argparse.Namespace, out: Console) -> int:
    from agora import PipelineError

    bound = load_target(args.target)
    try:
        explain = bound.explain(max_records=args.max_records)
    except PipelineError as exc:
        raise UsageError(f"invalid pipeline {args.target}: {exc}") from exc
    out.result(explain.to_dict(), explain)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Console) -> int:
    from agora import demo

    directory = Path(args.dir).resolve() if args.dir else demo.demo_dir()
    started = time.perf_counter()
    out.say(f"agora demo: generating {args.rows:,} order rows in {directory} ...")
    try:
        demo.prepare(directory, args.rows)
    except OSError as exc:
        raise UsageError(f"cannot prepare the demo directory {directory}: {exc} — pass a "
                         f"writable --dir") from exc
    out.say(f"  generated in {time.perf_counter() - started:.1f}s\n")
    bound = demo.pipeline(directory)
    out.say(f"{bound.explain()}\n")
    code = _run_bound(bound, None, out)
    if code == EXIT_OK:
        prog = _prog()
        out.say(f"\noutputs in {directory}: orders_enriched.csv, orders_enriched.parquet, "
                f"checkpoints.db, dlq.db")
        out.say(f"inspect: AGORA_DEMO_DIR={directory} {prog} explain agora.demo:pipeline")
        out.say(f"         {prog} dlq list {directory / 'dlq.db'}")
        out.say(f"         {prog} checkpoint show {directory / 'checkpoints.db'}")
    return code


def _prog() -> str:
    """How the user can invoke this command again (e.g. ``.venv/bin/agora``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "agora":
        rel = os.path.relpath(argv0)
        return rel if not rel.startswith("..") else argv0
    return "agora"


def _open_store(path: str) -> Any:
    from agora import AgoraError, SyncSQLiteCheckpointStore

    if not Path(path).exists():
        raise UsageError(f"no checkpoint store at {path} — pass the file given to "
                         f"SQLiteCheckpointStore")
    store = SyncSQLiteCheckpointStore(path, create=False)
    try:
        store.list_keys()  # opens and checks it: a CSV or a DLQ file is refused here
    except (AgoraError, OSError) as exc:
        store.close()
        raise UsageError(f"{path} is not an Agora checkpoint store ({first_sentence(exc)}) — "
                         f"pass the file given to SQLiteCheckpointStore") from exc
    return store


def _shown_fields(cp: dict[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint as ``checkpoint show`` prints it: its source identity only when set."""
    if cp is None or cp.get("source_identity") is not None:
        return cp
    return {name: value for name, value in cp.items() if name != "source_identity"}


def cmd_checkpoint(args: argparse.Namespace, out: Console) -> int:
    path = args.store or args.store_option
    if not path:
        raise UsageError("checkpoint needs a store: agora checkpoint show STORE.db [--key K]")
    store = _open_store(path)
    try:
        keys = store.list_keys()
        if args.key is not None and args.key not in keys:
            listed = ", ".join(repr(k) for k in keys) if keys else "none — no run has saved one yet"
            raise UsageError(f"no checkpoint key {args.key!r} in {path}; keys: {listed}")
        if args.action == "show":
            shown: dict[str, Any] = {}
            for key in [args.key] if args.key is not None else keys:
                cp = store.load(key)
                shown[key] = None if cp is None else cp.to_dict()
            # The text form leaves out an unset source identity (most checkpoints have
            # none); --json keeps every field, so its shape never changes.
            lines = [f"{key}: {json.dumps(_shown_fields(cp), default=str)}"
                     for key, cp in shown.items()]
            out.result(shown, "\n".join(lines) if lines else f"no checkpoints in {path}")
        else:
            if args.key is None:
                raise UsageError("checkpoint reset needs --key (see: agora checkpoint show STORE)")
            removed = store.reset(args.key)
            out.result({"key": args.key, "reset": bool(removed)},
                       f"checkpoint {args.key!r} reset; the next run starts from the beginning")
    finally:
        store.close()
    return EXIT_OK


def cmd_conformance(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        from conformance.__main__ import main as conformance_main
    except ImportError as exc:  # the suite needs the test extra (pytest, hypothesis)
        print(f"agora: the conformance suite needs the test extra: pip install 'agora[test]' ({exc})",
              file=sys.stderr)
        return EXIT_USAGE
    return int(conformance_main(rest))


class _Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes raised (so ``--json`` can report them) not printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} --help)")


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print exactly one JSON document on stdout (failures included); "
                             "human text goes to stderr")
    common.add_argument("-v", "--traceback", action="store_true", default=argparse.SUPPRESS,
                        help="show the Python traceback of an error")
    return common


EPILOG = """\
exit codes: 0 ok, 1 the run failed, 2 usage error, 130 interrupted,
141 stdout was closed early (e.g. piped into head)

Ctrl-C (or SIGTERM) stops a run cleanly: reading stops at once, work in flight is
committed within a few seconds, the checkpoint covers what was handled, and the next
run resumes there. A second Ctrl-C abandons the work in flight at once."""


def build_parser() -> argparse.ArgumentParser:
    from agora import __version__

    common = _common_options()
    parser = _Parser(prog="agora", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Agora: run and inspect batch data pipelines "
                                 "(source -> middleware -> sinks).")
    parser.add_argument("--version", action="version", version=f"agora {__version__}",
                        help="print the version and exit")
    parser.add_argument("-v", "--traceback", action="store_true",
                        help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (agora COMMAND --help for its options)")

    p = sub.add_parser("run", parents=[common], help="run a pipeline to the end of its source",
                       description="Run a pipeline; resumes from its checkpoint if it has one.")
    p.add_argument("target", metavar="MODULE:OBJECT",
                   help="a BoundPipeline, or a function taking no arguments that returns one")
    p.add_argument("--max-records", type=_non_negative, default=None, metavar="N",
                   help="stop after N source records (the checkpoint covers them)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("explain", parents=[common], help="show what a run would do, without running it",
                       description="Show the plan (lanes, planes, sinks); opens and reads nothing.")
    p.add_argument("target", metavar="MODULE:OBJECT",
                   help="a BoundPipeline, or a function taking no arguments that returns one")
    p.add_argument("--max-records", type=_non_negative, default=None, metavar="N",
                   help="explain a run limited to N source records")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("demo", parents=[common], help="generate a CSV and run the demo pipeline on it",
                       description="Generate an orders CSV and run the demo job on it.")
    p.add_argument("--rows", type=_non_negative, default=1_000_000, metavar="N",
                   help="order rows to generate (default 1,000,000)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="working directory (default $AGORA_DEMO_DIR or ./agora-demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("checkpoint", parents=[common], help="show or reset checkpoints in a SQLite store",
                       description="Show or reset the checkpoints of a SQLiteCheckpointStore.")
    p.add_argument("action", choices=["show", "reset"],
                   help="show: print checkpoints; reset: forget one (the next run starts over)")
    p.add_argument("store", metavar="STORE.db", nargs="?", default=None,
                   help="the checkpoint store file")
    p.add_argument("--store", dest="store_option", default=None, metavar="STORE.db",
                   help="the store (alternative to the positional argument)")
    p.add_argument("--key", default=None, metavar="KEY",
                   help="checkpoint key (show: default all keys; reset: required)")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("dlq", parents=[common], help="list or replay a DLQ (SQLite or JSON lines)",
                       description="List or replay the records of a dead-letter queue.")
    p.add_argument("action", choices=["list", "replay"],
                   help="list: print the records; replay: re-send them into a pipeline")
    p.add_argument("path", metavar="DLQ", help="the DLQ file (SQLite or JSON lines)")
    p.add_argument("--stage", default=None, metavar="STAGE",
                   help=f"only records of this stage ({', '.join(DLQ_STAGES)}, or a stage "
                        f"named by code that wrote the records)")
    p.add_argument("--limit", type=_non_negative, default=None, metavar="N",
                   help="list at most N records")
    p.add_argument("--into", default=None, metavar="MODULE:OBJECT",
                   help="replay target: the pipeline whose chain and sinks get the records")
    p.add_argument("--pipeline-id", default=None, metavar="ID",
                   help="replay: records of this pipeline id (default: the target's id)")
    p.add_argument("--include-replayed", action="store_true",
                   help="replay: re-send records an earlier replay already handled")
    p.add_argument("--dry-run", action="store_true",
                   help="replay: list what would be sent; change nothing")
    p.set_defaults(func=cmd_dlq)

    sub.add_parser("conformance", help="run the conformance suite (arguments go to pytest)",
                   add_help=False)
    return parser


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the ``agora`` command; returns its exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:
        return cmd_conformance(argparse.Namespace(), argv[1:])
    # Known before parsing, so that even a usage error honours --json and --traceback.
    out = Console(as_json="--json" in argv,
                  show_traceback=any(a in ("-v", "--traceback") for a in argv))
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        return int(args.func(args, out))
    except UsageError as exc:
        return out.fail(str(exc), exit_code=EXIT_USAGE, error_type="UsageError",
                        exc=exc.__cause__ or exc)
    except KeyboardInterrupt as exc:
        return out.fail("interrupted", exit_code=EXIT_INTERRUPTED, error_type="KeyboardInterrupt",
                        exc=exc)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - an unexpected error still gets one line
        hint = "" if out.show_traceback else " — rerun with --traceback and report it"
        return out.fail(f"internal error: {type(exc).__name__}: {exc}", hint=hint,
                        exit_code=EXIT_FAILED, error_type=type(exc).__name__, exc=exc)


def _silence_stdout() -> None:
    """The reader of stdout went away: point stdout at /dev/null so the interpreter's
    final flush does not print a BrokenPipeError of its own."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
