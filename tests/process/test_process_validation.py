"""Construction-time validation of both process middlewares: nothing starts."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agora.errors import LifecycleError, ProcessPoolBrokenError
from agora.process import ArrowProcessBatchMiddleware, ProcessBatchMiddleware
from tests.process import faults
from tests.process.helpers import context, rows, run, started

BOTH = [ProcessBatchMiddleware, ArrowProcessBatchMiddleware]


@pytest.mark.parametrize("cls", BOTH)
@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": -2}, "max_workers"),
        ({"max_in_flight_batches": 0}, "max_in_flight_batches"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1.5}, "timeout_s"),
        ({"max_pool_recycles": 0}, "max_pool_recycles"),
    ],
)
def test_out_of_range_parameters_are_value_errors_naming_the_parameter(cls, kwargs, param):
    with pytest.raises(ValueError, match=param):
        cls(faults.double_values, **kwargs)


@pytest.mark.parametrize("cls", BOTH)
@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_workers": 1.5}, "max_workers"),
        ({"max_workers": True}, "max_workers"),
        ({"max_in_flight_batches": "4"}, "max_in_flight_batches"),
        ({"timeout_s": "1"}, "timeout_s"),
        ({"ordered": 1}, "ordered"),
    ],
)
def test_wrongly_typed_parameters_are_type_errors_naming_the_parameter(cls, kwargs, param):
    with pytest.raises(TypeError, match=param):
        cls(faults.double_values, **kwargs)


@pytest.mark.parametrize("cls", BOTH)
def test_unordered_pipelining_is_rejected_at_on_start_before_any_worker_starts(cls, no_orphans):
    mw = cls(faults.double_values, ordered=False, max_in_flight_batches=2, name="loose")

    async def main():
        with pytest.raises(NotImplementedError,
                           match="'loose'.*unordered pipelined commit is not available"):
            await mw.on_start(context(mw.name))
        assert mw.worker_pids() == []
        assert mw._runner is None

    run(main)
    # One batch in flight has no order to lose: allowed.
    assert cls(faults.double_values, ordered=False, max_in_flight_batches=1).ordered is False


@pytest.mark.parametrize("cls", BOTH)
def test_a_lambda_breaks_the_pool_with_advice_to_define_fn_at_module_level(cls, no_orphans):
    mw = cls(lambda rows: rows, name="enrich")
    batch = rows(0) if cls is ProcessBatchMiddleware else pa.RecordBatch.from_pylist(rows(0))

    async def main():
        async with started(mw):
            assert mw.worker_pids() == []  # nothing was started for an fn no worker can load
            for _ in range(2):  # every batch learns the same recorded reason
                with pytest.raises(ProcessPoolBrokenError) as info:
                    await mw.submit(0, batch)
                message = str(info.value)
                assert "'enrich'" in message
                assert "define fn at module top level" in message
                assert "lambdas/closures cannot cross a process boundary" in message
        assert mw.metrics()["pool_state"] == "broken"
        assert mw.metrics()["batches_failed"] == 2

    run(main)


def test_a_closure_breaks_the_pool_too(no_orphans):
    factor = 3

    def scale(rows):
        return [r * factor for r in rows]

    mw = ProcessBatchMiddleware(scale)

    async def main():
        async with started(mw) as ctx:
            with pytest.raises(ProcessPoolBrokenError, match="cannot be pickled"):
                await mw.process_batch([1, 2], ctx)

    run(main)


@pytest.mark.parametrize("cls", BOTH)
def test_fn_must_be_callable(cls):
    with pytest.raises(TypeError, match="fn must be callable"):
        cls("not a function")


def test_defaults_and_names():
    rows_mw = ProcessBatchMiddleware(faults.double_values)
    arrow_mw = ArrowProcessBatchMiddleware(faults.arrow_identity)
    assert rows_mw.name == "process_batch"
    assert arrow_mw.name == "arrow_process_batch"
    assert rows_mw.process_isolated and arrow_mw.process_isolated
    assert rows_mw.ordered and rows_mw.max_in_flight_batches == 4
    assert rows_mw.max_pool_recycles == 8
    assert rows_mw.timeout_s is None


def test_workers_never_exceed_batches_in_flight():
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=8, max_in_flight_batches=2)
    assert mw.workers == 2
    assert mw.describe()["workers"] == 2
    assert mw.describe()["lane"] == "rows"


def test_submit_before_on_start_is_a_lifecycle_error():
    mw = ProcessBatchMiddleware(faults.double_values, name="early")

    async def main():
        with pytest.raises(LifecycleError, match="'early'.*used before on_start"):
            await mw.submit(0, rows(0))

    run(main)


def test_metrics_before_start_are_zero_and_on_stop_without_start_is_harmless():
    mw = ArrowProcessBatchMiddleware(faults.arrow_identity)
    assert mw.metrics()["batches_submitted"] == 0
    assert mw.worker_pids() == []

    async def main():
        from tests.process.helpers import context

        await mw.on_stop(context(mw.name))

    run(main)


def test_the_process_package_exports_exactly_its_public_names():
    import agora
    import agora.process

    assert agora.process.__all__ == [
        "ArrowProcessBatchMiddleware",
        "Executor",
        "Lease",
        "LeaseSpec",
        "ProcessBatchMiddleware",
        "ProcessPoolBrokenError",
        "WorkerPool",
        "WorkerStartupError",
    ]
    assert agora.WorkerPool is agora.process.WorkerPool
    assert agora.ProcessBatchMiddleware is ProcessBatchMiddleware
    assert agora.ArrowProcessBatchMiddleware is ArrowProcessBatchMiddleware
