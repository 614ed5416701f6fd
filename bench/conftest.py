"""pytest plumbing for the benchmark suite: timeouts, psutil sampling, a ratio summary.

Run with ``.venv/bin/python -m pytest bench --benchmark-only -p no:cacheprovider``. The
unit-test ``testpaths`` leave ``bench/`` out, so none of this runs with the unit suite.

* Every benchmark gets a ``timeout`` mark (unless it sets its own): a hung worker fails
  the benchmark instead of the session.
* ``tree_sampler`` samples RSS and CPU of this process and its workers while a benchmark
  runs, and afterwards asserts that no worker outlived it.
* ``lane_results`` collects one row per benchmark; the terminal summary prints them with
  each subject's ratio to the serial and hand-written baselines of the same group.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench._common import ProcessTreeSampler, assert_no_workers_left

#: Seconds before a single benchmark (all its rounds) is failed as hung. The slowest
#: one takes well under half a minute on a 2-core machine.
BENCH_TIMEOUT_S = 180

_RESULTS: list[dict[str, Any]] = []


def pytest_configure(config: pytest.Config) -> None:
    start_forkserver()


def start_forkserver() -> None:
    """Start the interpreter's forkserver now, preloading the benchmark transforms.

    Only the hand-written ``ProcessPoolExecutor`` baselines use this forkserver: Agora's
    workers are forked from Agora's own (``agora/process/zygote.py``), whatever this one
    does. A script's forkserver imports its ``__main__`` and so everything the script
    imported; under pytest ``__main__`` is pytest's, and every fresh baseline worker would
    import ``bench.transforms`` when it unpickles its first transform. Preloading gives the
    baselines what an application's main module gives them for free, so the comparison is
    fair to them.
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        [
            "pyarrow",
            "pyarrow.ipc",
            "pyarrow.compute",
            "ctypes",
            "agora.process.worker",
            "bench.transforms",
        ]
    )
    multiprocessing.forkserver.ensure_running()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BENCH_TIMEOUT_S))


@pytest.fixture
def tree_sampler() -> Iterator[Callable[[], ProcessTreeSampler]]:
    """A factory of :class:`ProcessTreeSampler` windows; asserts no worker is left after."""
    yield ProcessTreeSampler
    assert_no_workers_left()


@pytest.fixture(scope="session")
def lane_results() -> list[dict[str, Any]]:
    """Rows for the terminal summary: group, config, median_s, rows, extra figures."""
    return _RESULTS


def _ratio_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'group':<8} {'config':<14} {'rows/s':>11} {'vs serial':>9} {'vs ppe':>7} "
        f"{'main MB':>8} {'workers MB':>10} {'main CPU s':>10} {'workers CPU s':>13}"
    ]
    by_key = {(r["group"], r["config"]): r for r in rows}
    for r in rows:
        lane_kind = r["config"].split("-")[0]  # "row" or "arrow"
        serial = by_key.get((r["group"], f"{lane_kind}-serial"))
        ppe = by_key.get((r["group"], "ppe-pickle" if lane_kind == "row" else "ppe-ipc"))

        def vs(base: dict[str, Any] | None, r: dict[str, Any] = r) -> str:
            if base is None or base is r or r["config"].startswith("ppe"):
                return "-"
            return f"{r['rows_per_s'] / base['rows_per_s']:.2f}x"

        x = r["extra"]
        lines.append(
            f"{r['group']:<8} {r['config']:<14} {r['rows_per_s'] / 1e6:10.3f}M "
            f"{vs(serial):>9} {vs(ppe):>7} {x['main_peak_rss_mb']:8.0f} "
            f"{x['workers_peak_rss_mb']:10.0f} {x['main_cpu_s']:10.3f} {x['workers_cpu_s']:13.3f}"
        )
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    terminalreporter.section("agora lanes: rows/s (from the median round) and psutil per round")
    for line in _ratio_table(_RESULTS):
        terminalreporter.write_line(line)
    terminalreporter.write_line(
        "RSS: peaks over all rounds (MiB; main = this process, workers = its pool processes, "
        "summed per sample). CPU: seconds per round."
    )
