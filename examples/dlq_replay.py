"""The dead-letter workflow: a run whose sink rejects some records → ``agora dlq list`` →
fix the job → ``agora dlq replay … --into …`` → the records arrive.

Shows: a sink refusing single records (CsvSink with fixed columns refuses an unknown key)
while the run goes on; what the DLQ keeps (the record as the source emitted it, the
error, the sink); replaying into the fixed job, which sends the records through its
chain and writer and adds them to the output.

Run:  python examples/dlq_replay.py [--out DIR]   (default ./example-output/dlq_replay)
The CLI steps it runs can also be typed by hand from the examples/ folder:
  DLQ_REPLAY_EXAMPLE_OUT=DIR agora dlq list DIR/dlq.db
  DLQ_REPLAY_EXAMPLE_OUT=DIR agora dlq replay DIR/dlq.db --into dlq_replay:fixed_pipeline
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agora import CsvSink, DeliveryConfig, IterableSource, MapMiddleware, Pipeline, SQLiteDLQSink

#: Where the CLI finds the output folder when it imports this module's pipelines.
OUT_VAR = "DLQ_REPLAY_EXAMPLE_OUT"
DEFAULT_OUT = Path("example-output/dlq_replay")
OLD_CLIENT_ORDERS = (5, 17, 33)  # these arrive with "amt" instead of "amount"


def orders() -> list[dict[str, Any]]:
    return [{"order_id": i, "customer": f"cust-{i % 7}",
             ("amt" if i in OLD_CLIENT_ORDERS else "amount"): round(3 + i * 1.25, 2)}
            for i in range(40)]


def _out(out: Path | None) -> Path:
    return (out or Path(os.environ.get(OUT_VAR, DEFAULT_OUT))).resolve()


def _job(out: Path, *middleware: Any):
    return (Pipeline(IterableSource(orders(), name="orders"), id="orders-csv")
            .pipe(*middleware)
            .build(CsvSink(out / "orders.csv", fieldnames=["order_id", "customer", "amount"]),
                   delivery=DeliveryConfig(dlq=SQLiteDLQSink(out / "dlq.db"))))


def pipeline(out: Path | None = None):
    """The job as first deployed: orders with an "amt" key are refused by the CSV sink."""
    return _job(_out(out))


def rename_amt(order: dict[str, Any]) -> dict[str, Any]:
    fixed = dict(order)  # a new record: middleware never changes its input
    if "amt" in fixed:
        fixed["amount"] = fixed.pop("amt")
    return fixed


def fixed_pipeline(out: Path | None = None):
    """The fix: the same job, with a middleware that understands the old client's key."""
    return _job(_out(out), MapMiddleware(rename_amt, name="rename_amt"))


def agora(out: Path, *args: str) -> None:
    """Run an ``agora`` command from this folder (so it can import ``dlq_replay``)."""
    print(f"\n$ agora {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "agora", *args], cwd=Path(__file__).resolve().parent,
                   env={**os.environ, OUT_VAR: str(out)}, check=True)


def main(out: Path) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(pipeline(out).run_sync())          # written 37, errored 3 (in dlq.db)
    agora(out, "dlq", "list", str(out / "dlq.db"))
    agora(out, "dlq", "replay", str(out / "dlq.db"), "--into", "dlq_replay:fixed_pipeline")
    # orders.csv now holds all 40 orders: the 37 of the first run and the 3 replayed.


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    main(parser.parse_args().out)
