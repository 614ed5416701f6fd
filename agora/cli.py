"""The ``agora`` command: run, explain, demo, checkpoint, dlq, conformance.

Exit codes: 0 ok, 1 the run failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad command-line input: reported on stderr with exit code 2."""


def load_target(spec: str) -> Any:
    """Resolve ``MODULE:OBJECT`` to a BoundPipeline (calling it if it is a factory)."""
    from agora import BoundPipeline

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:OBJECT (e.g. jobs.orders:pipeline); got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, BoundPipeline) and callable(obj):
        obj = obj()
    if not isinstance(obj, BoundPipeline):
        raise UsageError(
            f"{spec} is a {type(obj).__name__}, not a BoundPipeline (or a factory returning "
            f"one); build it with Pipeline(source).pipe(...).build(sink)"
        )
    return obj


class ProgressLine:
    """A one-line live display on a TTY (stderr); silent otherwise or with NO_COLOR/CI set
    only the final summary is printed."""

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


def _print_summary(summary: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary)


def _run_bound(bound: Any, max_records: int | None, as_json: bool) -> int:
    progress = ProgressLine(sys.stderr)
    try:
        summary = asyncio.run(bound.run(max_records, progress=progress))
    except KeyboardInterrupt:
        print("\nagora: interrupted; workers terminated, sinks flushed and closed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the run's original exception: report and exit 1
        print(f"agora: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if bound.last_summary is not None:
            print("partial summary (nothing after the last checkpoint is committed):", file=sys.stderr)
            print(bound.last_summary if not as_json else json.dumps(bound.last_summary.to_dict()),
                  file=sys.stderr)
        return EXIT_FAILED
    _print_summary(summary, as_json)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    bound = load_target(args.target)
    return _run_bound(bound, args.max_records, args.json)


def cmd_explain(args: argparse.Namespace) -> int:
    bound = load_target(args.target)
    explain = bound.explain(max_records=args.max_records)
    print(json.dumps(explain.to_dict(), indent=2) if args.json else explain)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from agora import demo

    directory = Path(args.dir).resolve() if args.dir else demo.demo_dir()
    started = time.perf_counter()
    print(f"agora demo: generating {args.rows:,} order rows in {directory} ...", flush=True)
    demo.prepare(directory, args.rows)
    print(f"  generated in {time.perf_counter() - started:.1f}s\n", flush=True)
    bound = demo.pipeline(directory)
    print(bound.explain(), "\n", flush=True)
    code = _run_bound(bound, None, args.json)
    if code == EXIT_OK and not args.json:
        prog = _prog()
        print(f"\noutputs in {directory}: orders_enriched.csv, orders_enriched.parquet, "
              f"checkpoints.db, dlq.db")
        print(f"inspect: AGORA_DEMO_DIR={directory} {prog} explain agora.demo:pipeline")
        print(f"         {prog} dlq list {directory / 'dlq.db'}")
        print(f"         {prog} checkpoint show {directory / 'checkpoints.db'}")
    return code


def _prog() -> str:
    """How the user can invoke this command again (e.g. ``.venv/bin/agora``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "agora":
        rel = os.path.relpath(argv0)
        return rel if not rel.startswith("..") else argv0
    return "agora"


def _open_store(path: str) -> Any:
    from agora import SQLiteCheckpointStore

    if not Path(path).exists():
        raise UsageError(f"no checkpoint store at {path}")
    return SQLiteCheckpointStore(path, create=False)


def cmd_checkpoint(args: argparse.Namespace) -> int:
    path = args.store or args.store_option
    if not path:
        raise UsageError("checkpoint needs a store: agora checkpoint show STORE.db [--key K]")
    store = _open_store(path)
    try:
        keys = [args.key] if args.key else store.list_keys()
        if args.action == "show":
            out = {}
            for key in keys:
                cp = store.load(key)
                out[key] = None if cp is None else cp.to_dict()
            print(json.dumps(out, indent=2))
        else:
            if not args.key:
                raise UsageError("checkpoint reset needs --key (see: agora checkpoint show STORE)")
            removed = store.reset(args.key)
            print(f"checkpoint {args.key!r} {'reset' if removed else 'was not set'}")
    finally:
        store.close()
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    from agora.stores import read_dlq

    if not Path(args.path).exists():
        raise UsageError(f"no DLQ at {args.path}")
    if args.action == "replay":
        if not args.into:
            raise UsageError("dlq replay needs --into MODULE:OBJECT (the pipeline to replay into)")
        return _replay(args, load_target(args.into))
    records = list(read_dlq(args.path))
    if args.stage:
        records = [r for r in records if r.stage == args.stage]
    for rec in records[: args.limit] if args.limit else records:
        if args.json:
            print(rec.to_json())
        else:
            print(f"{rec.created_at}  {rec.stage:<16} {rec.error_type}: {rec.error_message[:100]}"
                  f"  record={json.dumps(rec.to_dict()['record'])[:120]}")
    if not args.json:
        print(f"{len(records)} DLQ record(s)", file=sys.stderr)
    return EXIT_OK


def _replay(args: argparse.Namespace, bound: Any) -> int:
    """``agora dlq replay``: a thin caller of ``BoundPipeline.replay``. Exit 0 when every
    record re-sent was handled, 1 when some failed again (or the replay run failed), 2 for
    usage errors; with ``--json`` exactly one JSON document on stdout in every case."""
    from agora.errors import PipelineError
    from agora.stores import DLQError

    def fail(code: int, kind: str, exc: BaseException) -> int:
        message = f"{type(exc).__name__}: {exc}"
        if args.json:
            print(json.dumps({"ok": False, "dlq": args.path, "error": kind, "message": message,
                              "exit_code": code}))
        else:
            print(f"agora: dlq replay {kind}: {message}", file=sys.stderr)
        return code

    try:
        report = asyncio.run(bound.replay(
            args.path, stage=args.stage, pipeline_id=args.pipeline_id,
            include_replayed=args.include_replayed, dry_run=args.dry_run,
            progress=None if args.json else ProgressLine(sys.stderr),
        ))
    except KeyboardInterrupt:
        print("\nagora: interrupted; what was handled before the last save stays marked as "
              "replayed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PipelineError as exc:  # e.g. the DLQ holds only other pipelines' records
        return fail(EXIT_USAGE, "refused", exc)
    except DLQError as exc:
        return fail(EXIT_FAILED, "cannot read the DLQ", exc)
    except Exception as exc:  # the replay run's original exception
        return fail(EXIT_FAILED, "run failed (records handled before it stopped stay marked)",
                    exc)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_conformance(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        from conformance.__main__ import main as conformance_main
    except ImportError as exc:  # the suite needs the test extra (pytest, hypothesis)
        print(f"agora: the conformance suite needs the test extra: pip install 'agora[test]' ({exc})",
              file=sys.stderr)
        return EXIT_USAGE
    return int(conformance_main(rest))


def build_parser() -> argparse.ArgumentParser:
    from agora import __version__

    parser = argparse.ArgumentParser(prog="agora", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"agora {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a pipeline (MODULE:OBJECT: a BoundPipeline or a factory)")
    p.add_argument("target", metavar="MODULE:OBJECT")
    p.add_argument("--max-records", type=_non_negative, default=None, metavar="N")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("explain", help="show what a run would do, without running it")
    p.add_argument("target", metavar="MODULE:OBJECT")
    p.add_argument("--max-records", type=_non_negative, default=None, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("demo", help="generate a CSV and run the demo pipeline on it")
    p.add_argument("--rows", type=_non_negative, default=1_000_000)
    p.add_argument("--dir", default=None, help="working directory (default $AGORA_DEMO_DIR or ./agora-demo)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("checkpoint", help="show or reset checkpoints in a SQLite store")
    p.add_argument("action", choices=["show", "reset"])
    p.add_argument("store", metavar="STORE.db", nargs="?", default=None)
    p.add_argument("--store", dest="store_option", default=None, metavar="STORE.db",
                   help="the store (alternative to the positional argument)")
    p.add_argument("--key", default=None, help="checkpoint key (default: all keys for show)")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("dlq", help="list or replay a DLQ (SQLite or JSON lines)")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("path", metavar="DLQ")
    p.add_argument("--stage", default=None, help="only records of this stage")
    p.add_argument("--limit", type=_non_negative, default=None)
    p.add_argument("--into", default=None, metavar="MODULE:OBJECT", help="replay target")
    p.add_argument("--pipeline-id", default=None, metavar="ID",
                   help="replay: records of this pipeline id (default: the target's id)")
    p.add_argument("--include-replayed", action="store_true",
                   help="replay: re-send records an earlier replay already handled")
    p.add_argument("--dry-run", action="store_true",
                   help="replay: list what would be sent; change nothing")
    p.add_argument("--json", action="store_true")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:
        return cmd_conformance(argparse.Namespace(), argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help → 0, bad usage → 2
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"agora: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
