"""The summary's sub-records (``runtime/figures.py``) and the committer's routing module stay
reachable under the names code already imports, and a pool's counters read as typed."""

from __future__ import annotations

import pytest

from agora.runtime import delivery, failure_routing, figures, summary


@pytest.mark.parametrize("name", sorted(set(figures.__all__) - {"json_ready"}))
def test_summary_module_still_exports_each_sub_record(name: str) -> None:
    assert name in summary.__all__
    assert getattr(summary, name) is getattr(figures, name)


def test_delivery_module_still_exports_the_names_the_engine_and_tests_import() -> None:
    assert set(delivery.__all__) == {"CHECKPOINT_THREAD_PREFIX", "Committer", "RunStop"}
    assert delivery.RunStop is failure_routing.RunStop
    assert delivery.CHECKPOINT_THREAD_PREFIX == "agora-checkpoint"


def test_pool_figures_read_a_missing_counter_as_zero_and_keep_unknown_ones() -> None:
    pool = figures.ProcessPoolFigures.from_metrics({
        "batches_ok": 3, "recycle_seconds": None, "pool_state": "running",
        "worker_peak_rss_by_pid": {101: 2048},
    })
    assert (pool.batches_ok, pool.batches_failed, pool.recycle_seconds) == (3, 0, 0.0)
    assert pool.pool_state == "running"
    assert pool.extra == {"worker_peak_rss_by_pid": {101: 2048}}
    flat = pool.to_dict()
    # One flat JSON-ready dict, as metrics() gave it: the extra counter beside the typed
    # ones, its int keys turned into the strings JSON has.
    assert flat["batches_ok"] == 3 and flat["worker_deaths"] == 0
    assert flat["worker_peak_rss_by_pid"] == {"101": 2048}
    assert "extra" not in flat


def test_json_ready_gives_back_what_json_would() -> None:
    assert figures.json_ready({"t": (1, 2), "odd": {1}}) == {"t": [1, 2], "odd": "{1}"}


def test_pool_figures_type_every_counter_every_executor_keeps() -> None:
    """The summary's typed fields cover the counters every executor's lease keeps, so a
    counter added there cannot fall into ``extra`` unnoticed."""
    from dataclasses import fields as fields_of

    from agora.process.handles import LaneCounters

    typed = {f.name: f.type for f in fields_of(figures.ProcessPoolFigures)}
    for f in fields_of(LaneCounters):
        assert typed.get(f.name) == f.type, f.name
