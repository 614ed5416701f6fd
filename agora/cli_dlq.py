"""``agora dlq list`` and ``agora dlq replay``: reading a dead-letter queue from the shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agora.console import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Console,
    ProgressLine,
    UsageError,
    first_sentence,
)
from agora.records import DLQStage
from agora.targets import load_target

__all__ = ["DLQ_STAGES", "cmd_dlq"]

#: The ``stage`` values of dead-letter records (``agora dlq list --stage``).
DLQ_STAGES = tuple(stage.value for stage in DLQStage)


def cmd_dlq(args: argparse.Namespace, out: Console) -> int:
    from agora import AgoraError
    from agora.stores import read_dlq

    if not Path(args.path).exists():
        raise UsageError(f"no DLQ at {args.path}")
    if args.action == "replay" and not args.into:
        raise UsageError("dlq replay needs --into MODULE:OBJECT (the pipeline to replay into)")
    if args.action == "replay" and (args.stage is None or args.stage in DLQ_STAGES):
        return _replay(args, load_target(args.into), out)
    try:
        records = list(read_dlq(args.path))
    except (AgoraError, OSError) as exc:
        raise UsageError(f"{args.path} is not an Agora DLQ ({first_sentence(exc)}) — pass the "
                         f"file given to SQLiteDLQSink or JsonLinesDLQSink") from exc
    if args.stage:
        _check_stage(args.stage, records)
        if args.action == "replay":
            return _replay(args, load_target(args.into), out)
        records = [r for r in records if r.stage == args.stage]
    shown = records[: args.limit] if args.limit is not None else records
    if out.as_json:
        out.document({"path": str(args.path), "count": len(records), "shown": len(shown),
                      "records": [rec.to_dict() for rec in shown]})
    else:
        for rec in shown:
            # backslashreplace: a lone surrogate kept in a JSON-lines DLQ cannot be encoded.
            line = (f"{rec.created_at_text}  {rec.stage:<16}{_attempt_text(rec)} {rec.error_type}: "
                    f"{rec.error_message[:100]}  record={json.dumps(rec.to_dict()['record'])[:120]}")
            print(line.encode("utf-8", "backslashreplace").decode("utf-8"), file=out.stdout)
        out.note(f"{len(records)} DLQ record(s)")
    return EXIT_OK


def _check_stage(stage: str, records: list[Any]) -> None:
    """A stage other than the runtime's own (code that builds DLQ records may name its own)
    must occur in the file: a typo is an error, not an empty list."""
    if stage in DLQ_STAGES or any(r.stage == stage for r in records):
        return
    found = sorted({str(r.stage) for r in records} - set(DLQ_STAGES))
    also = f"; other stages in this file: {', '.join(found)}" if found else ""
    raise UsageError(f"no record has stage {stage!r}; the runtime's stages are "
                     f"{', '.join(DLQ_STAGES)}{also}")


def _attempt_text(rec: Any) -> str:
    """`` attempt 3 of 3`` for a record that counts attempts (``attempt`` is 0-based), else
    nothing: most dead letters are first captures without a bound."""
    if rec.attempt == 0 and rec.max_attempts is None:
        return ""
    bound = "" if rec.max_attempts is None else f" of {rec.max_attempts}"
    return f" attempt {rec.attempt + 1}{bound}"


def _replay(args: argparse.Namespace, bound: Any, out: Console) -> int:
    """``agora dlq replay``: a thin caller of ``BoundPipeline.replay``. Exit 0 when every
    record re-sent was handled, 1 when some failed again (or the replay run failed), 2 for
    usage errors; with ``--json`` exactly one JSON document on stdout in every case."""
    from agora.errors import PipelineError
    from agora.stores import DLQError

    try:
        report = asyncio.run(bound.replay(
            args.path, stage=args.stage, pipeline_id=args.pipeline_id,
            include_replayed=args.include_replayed, dry_run=args.dry_run,
            progress=None if out.as_json else ProgressLine(sys.stderr),
        ))
    except KeyboardInterrupt as exc:
        return out.fail("dlq replay interrupted; what was handled before the last save stays "
                        "marked as replayed", exit_code=EXIT_INTERRUPTED,
                        error_type="KeyboardInterrupt", exc=exc)
    except PipelineError as exc:  # e.g. the DLQ holds only other pipelines' records
        return out.fail(f"dlq replay refused: {exc}", exit_code=EXIT_USAGE,
                        error_type=type(exc).__name__, exc=exc)
    except DLQError as exc:
        return out.fail(f"dlq replay cannot read the DLQ: {exc}", exit_code=EXIT_FAILED,
                        error_type=type(exc).__name__, exc=exc)
    except Exception as exc:  # the replay run's original exception
        return out.fail(f"dlq replay run failed (records handled before it stopped stay "
                        f"marked): {type(exc).__name__}: {exc}", exit_code=EXIT_FAILED,
                        error_type=type(exc).__name__, exc=exc)
    out.result(report.to_dict(), report)
    return EXIT_OK if report.ok else EXIT_FAILED
