"""Row lane vs Arrow lane, whole pipelines through the public API, against the baselines.

Each benchmark round is one complete run on the same data and transform: build the
pipeline, start its worker pool, move every batch, commit in source order into a
``NullSink``, stop the pool. Six configurations per transform:

==============  ====================================================================
row-lane        ``IterableBatchSource`` → ``ProcessBatchMiddleware`` (pickled rows)
arrow-lane      ``ArrowBatchSource`` → ``ArrowProcessBatchMiddleware`` (columnar)
row-serial      the same row transform in-process (``BatchApplyMiddleware``)
arrow-serial    the same Arrow transform in-process (``ArrowMapMiddleware``)
ppe-pickle      a hand-written ``ProcessPoolExecutor`` loop shipping ``list[dict]``
ppe-ipc         a hand-written ``ProcessPoolExecutor`` loop shipping Arrow IPC bytes
==============  ====================================================================

The hand-written loops start their pool inside the round too (``with
ProcessPoolExecutor(...)``), keep the same number of batches in flight and commit in
order, so every configuration pays for the same things. psutil figures (peak RSS of main
and workers, CPU per round) go to ``benchmark.extra_info``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from agora import (
    ArrowBatchSource,
    ArrowMapMiddleware,
    ArrowProcessBatchMiddleware,
    BatchApplyMiddleware,
    DeliveryConfig,
    IterableBatchSource,
    NullSink,
    Pipeline,
    ProcessBatchMiddleware,
)
from bench.bench_process_lanes import WINDOW, WORKERS, drive_ppe
from bench.transforms import (
    BATCH_ROWS,
    calibrate_k,
    decode_ipc,
    encode_ipc,
    make_batches,
    ppe_ipc_call,
    transform_pair,
)

CHEAP_ROWS = 200_000
HEAVY_ROWS = 100_000  # 10 batches of ~60 ms: a round stays around half a second
HEAVY_BATCH_S = 0.060
ROUNDS = {"cheap": 5, "heavy": 3}
CONFIGS = ["row-lane", "arrow-lane", "row-serial", "arrow-serial", "ppe-pickle", "ppe-ipc"]
# The engine also bounds records held between source and commit (max_buffer_size,
# default 10k = one batch here); raise it so WINDOW batches can really be in flight.
DELIVERY = DeliveryConfig(max_buffer_size=WINDOW * BATCH_ROWS)


@dataclass(frozen=True)
class Data:
    arrow: list[pa.RecordBatch]
    rows: list[list[dict[str, Any]]]


@pytest.fixture(scope="session")
def data() -> Data:
    arrow = make_batches(CHEAP_ROWS)
    return Data(arrow=arrow, rows=[b.to_pylist() for b in arrow])


@pytest.fixture(scope="session")
def heavy_k(data: Data) -> int:
    return calibrate_k(data.arrow[0], HEAVY_BATCH_S)


def make_round(
    config: str,
    arrow_fn: Callable[[Any], Any],
    row_fn: Callable[[Any], Any],
    arrow: list[pa.RecordBatch],
    rows: list[list[dict[str, Any]]],
    last: dict[str, Any],
) -> Callable[[], int]:
    """One complete run of ``config``; returns the rows it delivered. ``last`` receives
    the run summary's runtime figures (agora pipelines only)."""
    lane_kw = {"max_workers": WORKERS, "max_in_flight_batches": WINDOW}

    def pipeline(source: Any, middleware: Any) -> int:
        summary = (
            Pipeline(source, id=f"bench-{config}")
            .pipe(middleware)
            .build(NullSink(), delivery=DELIVERY)
            .run_sync()
        )
        last.update(summary.runtime)
        return summary.records_written

    if config == "row-lane":
        return lambda: pipeline(
            IterableBatchSource(rows), ProcessBatchMiddleware(row_fn, **lane_kw)
        )
    if config == "arrow-lane":
        return lambda: pipeline(
            ArrowBatchSource(arrow), ArrowProcessBatchMiddleware(arrow_fn, **lane_kw)
        )
    if config == "row-serial":
        return lambda: pipeline(IterableBatchSource(rows), BatchApplyMiddleware(row_fn))
    if config == "arrow-serial":
        return lambda: pipeline(ArrowBatchSource(arrow), ArrowMapMiddleware(arrow_fn))
    ctx = multiprocessing.get_context("forkserver")
    if config == "ppe-pickle":

        def ppe_pickle() -> int:
            with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
                return drive_ppe(pool, row_fn, rows, lambda b: b, lambda r: r)

        return ppe_pickle
    if config == "ppe-ipc":
        call = functools.partial(ppe_ipc_call, fn=arrow_fn)

        def ppe_ipc() -> int:
            with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
                return drive_ppe(pool, call, arrow, encode_ipc, decode_ipc)

        return ppe_ipc
    raise ValueError(f"unknown benchmark configuration {config!r}")


@pytest.mark.parametrize("transform", ["cheap", "heavy"])
@pytest.mark.parametrize("config", CONFIGS)
def test_pipeline(
    benchmark: Any,
    tree_sampler: Any,
    lane_results: list[dict[str, Any]],
    data: Data,
    heavy_k: int,
    transform: str,
    config: str,
) -> None:
    n_rows = CHEAP_ROWS if transform == "cheap" else HEAVY_ROWS
    arrow = data.arrow[: n_rows // BATCH_ROWS]
    rows = data.rows[: n_rows // BATCH_ROWS]
    arrow_fn, row_fn = transform_pair(transform, heavy_k)
    runtime: dict[str, Any] = {}
    run_once = make_round(config, arrow_fn, row_fn, arrow, rows, runtime)
    rounds, warmup = ROUNDS[transform], 1
    benchmark.group = f"{transform} transform"
    with tree_sampler() as sampler:
        delivered = benchmark.pedantic(run_once, rounds=rounds, warmup_rounds=warmup, iterations=1)
    assert delivered == n_rows, f"{config} delivered {delivered} of {n_rows} rows"

    if benchmark.stats is None:  # --benchmark-disable: one plain run, a correctness check
        return
    median_s = benchmark.stats.stats.median
    extra = sampler.figures.as_dict(per=rounds + warmup)
    benchmark.extra_info.update(
        config=config,
        transform=transform,
        rows=n_rows,
        batch_rows=BATCH_ROWS,
        workers=WORKERS if "serial" not in config else 0,
        window=WINDOW,
        heavy_k=heavy_k if transform == "heavy" else None,
        rows_per_s=n_rows / median_s,
        **extra,
    )
    if runtime:  # the runtime's own psutil figures for the last round, for cross-checking
        res = runtime.get("resources", {})
        benchmark.extra_info["runtime_main_peak_rss_mb"] = round(
            res.get("main_peak_rss_bytes", 0) / 2**20, 1
        )
        benchmark.extra_info["runtime_workers_peak_rss_mb"] = round(
            res.get("workers_peak_rss_bytes", 0) / 2**20, 1
        )
        for metrics in runtime.get("process_batch", {}).values():
            benchmark.extra_info["runtime_peak_in_flight"] = metrics.get("peak_in_flight")
            benchmark.extra_info["runtime_worker_cpu_s"] = metrics.get("worker_cpu_seconds")
    lane_results.append(
        {"group": transform, "config": config, "rows_per_s": n_rows / median_s, "extra": extra}
    )
