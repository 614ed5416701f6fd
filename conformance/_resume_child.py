"""Child process of SRC-CKPT-05: resume a source from checkpoints in a fresh interpreter.

Reads a pickle from stdin — ``{"harness", "ns", "label", "checkpoints"}`` — and writes a
pickle to stdout: for each checkpoint, the canonical rows the resumed source emitted, or
a string describing the exception it raised.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any


def main() -> int:
    from conformance.checks._context import SourceContext
    from conformance.checks._source_io import read_source
    from conformance.levels import Profile
    from conformance.targets import Target

    job = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - written by our parent
    target = Target(kind="source", label=job["label"], harness=job["harness"], origin="subprocess")
    results: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="conformance-child-") as work:
        ctx = SourceContext(target, Path(work), Profile.for_level("smoke", seed=0))
        try:
            for value in job["checkpoints"]:
                try:
                    read = asyncio.run(read_source(ctx, job["ns"], resume=value, observe=False))
                except Exception as exc:  # reported to the parent, which fails the check
                    results.append(f"{type(exc).__name__}: {exc}")
                else:
                    results.append(read.rows)
        finally:
            ctx.cleanup()
    sys.stdout.buffer.write(pickle.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
