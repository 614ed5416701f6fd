"""A custom source paging through an "API", stopped part-way and resumed from its checkpoint.

Shows: a batch source (one page per batch) whose checkpoint is the API's own cursor;
prepare_resume() receiving a Checkpoint and reading its .value; refusing a checkpoint
that is not ours; positioning inside a page when max_records stops mid-page; a second,
freshly built job (as after a crash or a restart) continuing exactly where the first
one stopped — every order once, in order.

Run:  python examples/paged_api_source.py [--out DIR]   (default ./example-output/paged_api_source)
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agora import (BaseSource, Checkpoint, CheckpointError, DataPlane, DeliveryConfig,
                   JsonLinesSink, Pipeline, SQLiteCheckpointStore, SourceDataPlaneSpec)


class FakeOrdersAPI:
    """Stands in for a paginated HTTP API: ``page(cursor)`` returns up to ``limit`` orders
    after ``cursor`` (an order id; None = from the start) and the cursor of the last one."""

    def __init__(self, total: int) -> None:
        self.orders = [{"order_id": i, "amount": round(5 + i * 0.5, 2)} for i in range(total)]

    def page(self, cursor: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        start = 0 if cursor is None else cursor + 1
        items = [dict(o) for o in self.orders[start:start + limit]]
        return items, (items[-1]["order_id"] if items else cursor)


class PagedOrdersSource(BaseSource):
    """Orders from ``FakeOrdersAPI``, one page per batch. Checkpoint: ``{"after_order": id}``."""

    supports_checkpoint = True

    def __init__(self, api: FakeOrdersAPI, page_size: int = 10) -> None:
        self.api = api
        self.page_size = page_size
        self.source_name = "orders_api"
        self._cursor: int | None = None   # last order emitted
        self._page: list[dict[str, Any]] = []

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, DataPlane.PYTHON_BATCHES)

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is None:                 # first run (or a re-run without a store)
            self._cursor = None
            return
        value = checkpoint.value               # what current_checkpoint() returned
        if not (isinstance(value, dict) and set(value) == {"after_order"}):
            raise CheckpointError(f"source {self.source_name!r}: {value!r} is not an orders "
                                  f"API cursor; reset the checkpoint to read from the start")
        self._cursor = value["after_order"]

    def current_checkpoint(self) -> Any:
        return {"after_order": self._cursor}

    def checkpoint_within_last_batch(self, rows: int) -> Any:
        # max_records stopped inside the last page (after 1 <= rows < page size records):
        # the position after the last record that was let through.
        return {"after_order": self._page[rows - 1]["order_id"]}

    async def stream_batches(self) -> AsyncIterator[Any]:  # type: ignore[override]
        while True:
            page, cursor = self.api.page(self._cursor, self.page_size)
            if not page:
                return
            self._page, self._cursor = page, cursor  # move the position before the page leaves
            yield page


def build(out: Path, api: FakeOrdersAPI):
    return Pipeline(PagedOrdersSource(api), id="orders-api").build(
        JsonLinesSink(out / "orders.jsonl"),
        delivery=DeliveryConfig(checkpoint=SQLiteCheckpointStore(out / "checkpoints.db"),
                                checkpoint_every=10))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    api = FakeOrdersAPI(total=95)
    print(build(out, api).run_sync(max_records=25))  # stops in the middle of page 3
    print(build(out, api).run_sync())                # a new job resumes: orders 25..94


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output/paged_api_source"))
    main(parser.parse_args().out)
