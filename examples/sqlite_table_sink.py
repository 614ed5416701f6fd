"""A custom sink: orders upserted into a typed SQLite table, in a row-lane pipeline.

Shows: the minimum a sink needs (open / write_batch / flush / close and a plane
declaration); one WriteResult per record, so one bad order is dead-lettered while the
rest of its batch is written; durability at flush(); why an upsert keyed by order id
makes the re-delivery after a crash harmless.

Run:  python examples/sqlite_table_sink.py [--out DIR]
      (default ./example-output/sqlite_table_sink)
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agora import (BaseSink, DataPlane, DeliveryConfig, FilterMiddleware, IterableSource,
                   JsonLinesDLQSink, Pipeline, WriteResult)


class OrdersTableSink(BaseSink):
    """Upserts ``{"order_id", "customer", "amount"}`` records into the ``orders`` table.

    A record without a customer is refused on its own. Rows are committed at ``flush()``.
    Re-delivered records replace themselves (same ``order_id``), so the table continues
    across runs and never needs ``resume_output()``: it is never started over.
    """

    accepted_data_planes = (DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES)
    native_data_planes = (DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sink_name = f"orders_table:{path.name}"
        self._conn: sqlite3.Connection | None = None
        self._rows: list[tuple[int, str, float]] = []  # copied out of the caller's records

    async def open(self) -> None:
        self._conn = sqlite3.connect(self.path)
        with self._conn:
            self._conn.execute("CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY,"
                               " customer TEXT NOT NULL, amount REAL NOT NULL)")
        await super().open()

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")  # misuse (before open, after close) raises
        results = []
        for r in records:
            if not r.get("customer"):
                results.append(WriteResult.failed(ValueError(
                    f"sink {self.sink_name!r}: order {r.get('order_id')} has no customer")))
            else:
                self._rows.append((int(r["order_id"]), str(r["customer"]), float(r["amount"])))
                results.append(WriteResult.ok())
        return None if all(res.written for res in results) else results

    async def write(self, record: Any) -> None:
        result = await self.write_batch([record])
        if result is not None:
            raise result[0].error  # type: ignore[misc]

    async def flush(self) -> None:
        self._check_usable("flush")
        assert self._conn is not None
        with self._conn:  # committed when flush() returns: the checkpoint relies on it
            self._conn.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?)", self._rows)
        self._rows.clear()

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self.flush()
            finally:
                self._conn.close()
                self._conn = None
        await super().close()


def orders() -> list[dict[str, Any]]:
    """200 orders; every 50th has no customer, and order 7 was cancelled (amount 0)."""
    return [{"order_id": i, "customer": "" if i % 50 == 49 else f"cust-{i % 13}",
             "amount": 0.0 if i == 7 else round(10 + i * 1.5, 2)} for i in range(200)]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    job = (Pipeline(IterableSource(orders(), name="orders"), id="orders-to-sqlite")
           .pipe(FilterMiddleware(lambda r: r["amount"] > 0, name="drop_cancelled"))
           .build(OrdersTableSink(out / "orders.db"),
                  delivery=DeliveryConfig(dlq=JsonLinesDLQSink(out / "rejected.jsonl"),
                                          batch_size=50)))
    summary = job.run_sync()
    print(summary)  # written 195, dropped 1, errored 4


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output/sqlite_table_sink"))
    main(parser.parse_args().out)
