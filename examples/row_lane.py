"""A row-lane job: a row source → Map and Filter middleware → CSV and JSON-lines sinks.

Shows: per-record middleware (a MapMiddleware that normalises each event, a
FilterMiddleware that drops test traffic — dropped records are counted, not errors);
fan-out to two sinks; ``DeliveryConfig(batch_size=…)`` grouping records per sink call on
the row lane; ``explain()`` showing the plan before anything runs.

Run:  python examples/row_lane.py [--out DIR]   (default ./example-output/row_lane)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agora import (CsvSink, DeliveryConfig, FilterMiddleware, IterableSource, JsonLinesSink,
                   MapMiddleware, Pipeline)


def events() -> list[dict[str, Any]]:
    """300 page views; every 10th comes from the test user."""
    return [{"user": "test" if i % 10 == 0 else f"User{i % 17}", "page": f"/p/{i % 5}",
             "ms": 20 + i % 80} for i in range(300)]


def normalise(event: dict[str, Any]) -> dict[str, Any]:
    # Return a new dict: middleware must not change its input in place (the DLQ shows
    # records as the source emitted them).
    return {"user": event["user"].lower(), "page": event["page"], "seconds": event["ms"] / 1000}


def build(out: Path):
    return (
        Pipeline(IterableSource(events(), name="page_views"), id="page-views")
        .pipe(MapMiddleware(normalise, name="normalise"),
              FilterMiddleware(lambda e: e["user"] != "test", name="drop_test_user"))
        .fan_out([CsvSink(out / "views.csv"), JsonLinesSink(out / "views.jsonl")],
                 delivery=DeliveryConfig(batch_size=100))
    )


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    job = build(out)
    print(job.explain())     # lane "linear", both sinks receive python_batches of 100
    print(job.run_sync())    # consumed 300, written 270, dropped 30


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output/row_lane"))
    main(parser.parse_args().out)
