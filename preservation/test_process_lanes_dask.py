"""The process-lane preservation tests whose rules are the same on a Dask cluster, re-run
with every middleware on ``agora.DaskExecutor`` (a 2-worker local cluster shared by
the module, checked for leftover processes when it closes).

Left out, because Dask keeps the rule differently (``tests/process/test_dask_executor.py``
covers each): a timeout never invalidates a sibling (only the stuck batch's worker is
restarted), and the death and recycle-budget tests count local pool recycles, which a
Dask lease does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preservation import test_process_lanes as lanes
from tests.conftest import assert_no_worker_processes

pytest.importorskip("distributed")

from agora import DaskExecutor  # noqa: E402

CASES: dict[str, Callable[..., None]] = {
    "source_order": lanes.test_commits_follow_source_order_when_batches_complete_out_of_order,
    "cancel": lanes.test_cancelling_the_run_terminates_sleeping_workers_promptly,
    "fail_closed_timeout": lanes.test_fail_closed_timeout_stops_with_the_original_process_batch_error,
    "fail_closed_raise": lanes.test_fail_closed_raise_in_fn_stops_with_a_process_batch_error_naming_the_cause,
    "identity": lanes.test_identity_through_workers_delivers_every_record_once,
    "sink_failure": lanes.test_a_sink_failure_stops_the_run_with_batches_still_in_the_workers,
    "wrong_length": lanes.test_a_wrong_length_result_is_that_batch_s_failure,
}
#: Cases that also take the executor (None: skip the WorkerPool-only assertions).
RERUN_CASES: dict[str, Callable[..., None]] = {
    "second_run_after_timeout": lanes.test_a_second_run_on_the_same_executor_after_a_timeout_loses_nothing,
}


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    with DaskExecutor(n_workers=2) as executor:
        yield executor
    assert_no_worker_processes()


@pytest.fixture
def on_dask(dask_executor: DaskExecutor) -> Iterator[None]:
    """Every middleware the preservation harness builds runs on the Dask executor."""
    lanes._executor[0] = dask_executor  # type: ignore[call-overload]
    try:
        yield
    finally:
        lanes._executor[0] = None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", lanes.LANES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_process_lane_rule_holds_on_dask(
    tmp_path: Path, case: str, lane: str, on_dask: None
) -> None:
    # no_orphans is not used: the shared cluster's workers live for the whole module
    # (the module fixture checks that none outlives it).
    CASES[case](tmp_path, lane, None)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lane", lanes.LANES)
@pytest.mark.parametrize("case", sorted(RERUN_CASES))
def test_process_lane_rule_holds_run_after_run_on_dask(
    tmp_path: Path, case: str, lane: str, on_dask: None
) -> None:
    RERUN_CASES[case](tmp_path, lane, None)


@pytest.mark.timeout(60)
def test_an_unpicklable_record_fails_its_batch_on_dask(tmp_path: Path, on_dask: None) -> None:
    lanes.test_an_unpicklable_record_fails_its_batch_and_is_still_dead_lettered(tmp_path, None)
