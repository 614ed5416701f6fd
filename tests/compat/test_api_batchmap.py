"""BatchMapMiddleware(fn) applies fn to each record of a batch, as upstream 0.3.0 does;
BatchApplyMiddleware(fn) hands fn the whole batch (the meaning BatchMapMiddleware had)."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa
import pytest

from agora import (
    ArrowBatchSource,
    BatchApplyMiddleware,
    BatchMapMiddleware,
    ContractError,
    DeliveryConfig,
    IterableBatchSource,
    IterableSource,
    MemorySink,
    Pipeline,
)

ROWS = [{"id": i, "value": i * 10} for i in range(6)]
BATCHES = [ROWS[0:2], ROWS[2:4], ROWS[4:6]]


def double(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "value": r["value"] * 2}


def test_fn_is_applied_to_each_record_of_every_batch() -> None:
    seen: list[Any] = []

    def spy(r: dict[str, Any]) -> dict[str, Any]:
        seen.append(r)
        return double(r)

    sink = MemorySink()
    summary = (Pipeline(IterableBatchSource(BATCHES)).pipe(BatchMapMiddleware(spy, "dbl"))
               .build(sink).run_sync())
    assert seen == ROWS  # one record per call, never a list
    assert [r["value"] for r in sink.records] == [0, 20, 40, 60, 80, 100]
    assert summary.by_middleware["dbl"]["in"] == 6 and summary.by_middleware["dbl"]["out"] == 6


def test_none_drops_that_record_and_is_counted() -> None:
    sink = MemorySink()
    summary = (Pipeline(IterableBatchSource(BATCHES))
               .pipe(BatchMapMiddleware(lambda r: r if r["id"] % 2 else None, name="odd"))
               .build(sink).run_sync())
    assert [r["id"] for r in sink.records] == [1, 3, 5]
    assert summary.records_dropped == 3 and summary.by_middleware["odd"]["dropped"] == 3


def test_works_on_a_row_source_with_opaque_records() -> None:
    sink = MemorySink()
    Pipeline(IterableSource([1, 2, 3])).pipe(BatchMapMiddleware(lambda n: n * n)).build(
        sink).run_sync()
    assert sink.records == [1, 4, 9]


def test_after_an_arrow_source_fn_gets_each_row_as_a_dict() -> None:
    table = pa.Table.from_pylist(ROWS)
    sink = MemorySink()
    (Pipeline(ArrowBatchSource(table)).pipe(BatchMapMiddleware(double)).build(sink)
     .run_sync())
    assert sink.records == [double(r) for r in ROWS]


def test_coroutine_functions_are_awaited_and_keep_order() -> None:
    async def slow_double(r: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.001 * (6 - r["id"]))  # later records finish first
        return double(r)

    sink = MemorySink()
    Pipeline(IterableBatchSource(BATCHES)).pipe(BatchMapMiddleware(slow_double)).build(
        sink).run_sync()
    assert sink.records == [double(r) for r in ROWS]


def test_one_raising_record_dead_letters_its_whole_batch_and_keeps_the_others() -> None:
    def picky(r: dict[str, Any]) -> dict[str, Any]:
        if r["id"] == 3:
            raise ValueError("id 3 is not allowed")
        return r

    sink, dlq = MemorySink(), MemorySink(name="dlq")
    summary = (Pipeline(IterableBatchSource(BATCHES)).pipe(BatchMapMiddleware(picky, "picky"))
               .build(sink, delivery=DeliveryConfig(dlq=dlq)).run_sync())
    assert [r["id"] for r in sink.records] == [0, 1, 4, 5]
    assert [r.record for r in dlq.records] == ROWS[2:4]  # the batch holding id 3, whole
    assert {(r.stage, r.middleware, r.error_type) for r in dlq.records} == {
        ("batch_middleware", "picky", "ValueError")}
    assert summary.records_errored == 2 and summary.records_written == 4


def test_a_raising_record_without_a_dlq_fails_the_run_with_its_error() -> None:
    def boom(r: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("missing column")

    bound = Pipeline(IterableBatchSource(BATCHES)).pipe(BatchMapMiddleware(boom)).build(
        MemorySink())
    with pytest.raises(KeyError, match="missing column"):
        bound.run_sync()


def test_a_whole_batch_function_now_belongs_to_batch_apply() -> None:
    def keep_first_half(records: list[Any]) -> list[Any]:
        half = len(records) // 2
        return [r if i < half else None for i, r in enumerate(records)]

    applied = MemorySink()
    (Pipeline(IterableBatchSource([ROWS[:4]])).pipe(BatchApplyMiddleware(keep_first_half))
     .build(applied).run_sync())
    assert [r["id"] for r in applied.records] == [0, 1]
    # The same function under BatchMapMiddleware gets each record (a dict), not a list,
    # and silently makes something else of it: why the guide asks programs written for
    # the whole-batch meaning to move to BatchApplyMiddleware.
    mapped = MemorySink()
    (Pipeline(IterableBatchSource([ROWS[:4]])).pipe(BatchMapMiddleware(keep_first_half))
     .build(mapped).run_sync())
    assert mapped.records == [["id", None]] * 4


def test_batch_apply_result_of_another_length_is_a_contract_error() -> None:
    bound = (Pipeline(IterableBatchSource([ROWS[:3]]))
             .pipe(BatchApplyMiddleware(lambda rs: list(rs) + [None], name="long"))
             .build(MemorySink()))
    with pytest.raises(ContractError, match="'long' returned 4 results for 3"):
        bound.run_sync()


def test_names_default_to_the_function_and_may_be_positional() -> None:
    assert BatchMapMiddleware(double).name == "batch_map:double"
    assert BatchApplyMiddleware(list).name == "batch_apply:list"
    assert BatchMapMiddleware(double, "upstream_style").name == "upstream_style"


@pytest.mark.parametrize("cls", [BatchMapMiddleware, BatchApplyMiddleware])
def test_a_non_callable_is_refused_naming_the_class(cls: Any) -> None:
    with pytest.raises(TypeError, match=rf"{cls.__name__} needs a callable; got dict"):
        cls({"not": "callable"})
