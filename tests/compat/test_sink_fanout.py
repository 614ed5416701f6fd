"""0.3.0 fan-out and router behaviours: duck-typed members, the fan-out driven directly as
a writer, same-named sinks told apart, generic routers and ``bind_context``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from agora import (
    ArrowCsvSource,
    BaseSink,
    DataPlane,
    DeliveryConfig,
    IterableSource,
    MemorySink,
    Pipeline,
    SinkCapabilities,
    SinkFanOut,
    SinkRouter,
    WriteResult,
)
from agora.errors import ContractError
from agora.sinks.fanout import FanOutResult


class DuckCollector:
    """A sink by shape only: async open / write / flush / close; logs lifecycle calls."""

    def __init__(self, name: str = "duck", *, fail_on: Any = None, fail_open: bool = False,
                 fail_flush: bool = False, fail_close: bool = False) -> None:
        self.sink_name = name
        self.records: list[Any] = []
        self.log: list[str] = []
        self.fail_on = fail_on
        self.fail_open, self.fail_flush, self.fail_close = fail_open, fail_flush, fail_close

    async def open(self) -> None:
        self.log.append("open")
        if self.fail_open:
            raise OSError(f"{self.sink_name} cannot open")

    async def write(self, record: Any) -> None:
        if record == self.fail_on:
            raise ValueError(f"{self.sink_name} rejects {record!r}")
        self.records.append(record)

    async def flush(self) -> None:
        self.log.append("flush")
        if self.fail_flush:
            raise OSError(f"{self.sink_name} cannot flush")

    async def close(self) -> None:
        self.log.append("close")
        if self.fail_close:
            raise OSError(f"{self.sink_name} cannot close")


class ShortBatchSink(BaseSink[Any]):
    """Returns one WriteResult too few from write_batch: a contract breach."""

    sink_name = "short"

    async def write(self, record: Any) -> None:
        del record

    async def write_batch(self, records: Any) -> list[WriteResult] | None:
        return [WriteResult.ok()] * (len(records) - 1)


class ArrowOverrideSink(BaseSink[Any]):
    """Declares no planes but implements write_arrow_batch: takes Arrow natively."""

    sink_name = "arrow_override"

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.rows: list[Any] = []

    async def write(self, record: Any) -> None:
        self.rows.append(record)

    async def write_arrow_batch(self, batch: Any) -> list[WriteResult] | None:
        self.batches.append(batch)
        return None


def test_duck_typed_members_run_in_a_pipeline_and_failures_are_dead_lettered() -> None:
    good, bad = DuckCollector("good"), DuckCollector("bad", fail_on=2)
    dlq = MemorySink(name="dlq")
    s = Pipeline(IterableSource([1, 2, 3])).fan_out(
        SinkFanOut([good, bad]), delivery=DeliveryConfig(dlq=dlq)).run_sync()
    assert good.records == [1, 2, 3] and bad.records == [1, 3]
    assert s.records_written == 3 and s.records_partially_written == 1
    assert [(r.sink, r.record) for r in dlq.records] == [("bad", 2)]


def test_same_named_sinks_get_distinct_names_without_taking_an_existing_one() -> None:
    sinks = [MemorySink(name="x"), MemorySink(name="x"), MemorySink(name="x#2")]
    fan = SinkFanOut(sinks)
    assert [s.sink_name for s in fan.sinks] == ["x", "x#3", "x#2"]
    assert [s.sink_name for s in sinks] == ["x", "x", "x#2"]
    explain = Pipeline(IterableSource([1])).fan_out(fan).explain()
    assert [sp.sink_name for sp in explain.sinks] == ["x", "x#3", "x#2"]


def test_renamed_member_keeps_the_planes_of_its_sink() -> None:
    fan = SinkFanOut([ArrowOverrideSink(), ArrowOverrideSink()])
    spec = fan.sinks[1].data_plane_spec()
    assert spec.sink_name == "arrow_override#2"
    assert DataPlane.ARROW_BATCHES in spec.native_planes


def test_the_same_sink_object_twice_is_refused_with_the_fix() -> None:
    sink = MemorySink(name="m")
    with pytest.raises(ValueError, match=r"same sink object twice \('m'\).*list it once"):
        SinkFanOut([sink, sink])


def test_a_member_that_is_not_a_sink_is_refused_naming_what_is_missing() -> None:
    with pytest.raises(TypeError, match=r"SinkFanOut needs a sink.*int has no async open"):
        SinkFanOut([MemorySink(name="m"), 3])


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_with_concurrency_refuses_a_bad_limit(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"max_concurrency must be an int >= 1 or None"):
        SinkFanOut([MemorySink(name="m")]).with_concurrency(bad)


def test_with_concurrency_is_a_new_fan_out_and_sets_the_pipeline_concurrency() -> None:
    fan = SinkFanOut([MemorySink(name="a"), MemorySink(name="b")])
    conc = fan.with_concurrency()
    assert conc is not fan and conc.concurrent and not fan.concurrent
    assert conc.sink_concurrency == 2 and fan.with_concurrency(1).sink_concurrency == 1


@pytest.mark.parametrize("concurrent", [False, True])
def test_open_failure_closes_the_sinks_already_open_and_raises_the_first_error(
        concurrent: bool) -> None:
    first, broken, last = DuckCollector("a"), DuckCollector("b", fail_open=True), DuckCollector("c")
    fan = SinkFanOut([first, broken, last])
    if concurrent:
        fan = fan.with_concurrency()
    with pytest.raises(OSError, match="b cannot open"):
        asyncio.run(fan.open())
    assert first.log == ["open", "close"]
    # Sequential: c was never opened. Concurrent: it opened alongside and is closed again.
    assert last.log == (["open", "close"] if concurrent else [])


@pytest.mark.parametrize("phase", ["flush", "close"])
def test_flush_and_close_reach_every_sink_before_raising_the_first_error(phase: str) -> None:
    broken = DuckCollector("a", **{f"fail_{phase}": True})
    other = DuckCollector("b")
    fan = SinkFanOut([broken, other])
    with pytest.raises(OSError, match=f"a cannot {phase}"):
        asyncio.run(getattr(fan, phase)())
    assert other.log == [phase]


def test_direct_write_reports_each_failing_sink_in_sink_order() -> None:
    fan = SinkFanOut([DuckCollector("a", fail_on="r"), DuckCollector("b"),
                      DuckCollector("c", fail_on="r")])
    result = asyncio.run(fan.write("r"))
    assert isinstance(result, FanOutResult)
    assert result.written and result.partial and not result.ok
    assert [str(e) for e in result.errors] == ["a rejects 'r'", "c rejects 'r'"]


def test_write_batch_with_a_wrong_result_count_fails_every_record_of_that_sink() -> None:
    fan = SinkFanOut([ShortBatchSink(), MemorySink(name="m")])
    asyncio.run(fan.open())
    results = asyncio.run(fan.write_batch([{"a": 1}, {"a": 2}]))
    assert all(r.written and len(r.errors) == 1 for r in results)
    assert isinstance(results[0].errors[0], ContractError)
    assert "returned 1 items from write_batch() for 2 records" in str(results[0].errors[0])


def test_write_arrow_batch_gives_arrow_sinks_the_batch_and_others_rows() -> None:
    arrow, rows = ArrowOverrideSink(), DuckCollector("rows", fail_on={"id": 2})
    batch = pa.RecordBatch.from_pylist([{"id": 1}, {"id": 2}])
    results = asyncio.run(SinkFanOut([arrow, rows]).write_arrow_batch(batch))
    assert arrow.batches == [batch] and arrow.rows == []
    assert rows.records == [{"id": 1}]
    assert results is not None and [r.ok for r in results] == [True, False]
    assert results[1].written  # the Arrow sink took it


def test_write_arrow_batch_failure_on_an_uncountable_batch_is_a_named_error() -> None:
    class Refuses:
        sink_name = "refuses"

        async def open(self) -> None: ...
        async def close(self) -> None: ...

        async def write_arrow_batch(self, batch: Any) -> None:
            raise RuntimeError("refused")

    with pytest.raises(TypeError, match=r"neither num_rows nor to_pylist\(\).*RecordBatch"):
        asyncio.run(SinkFanOut([Refuses()]).write_arrow_batch(object()))


def test_a_base_sink_overriding_write_arrow_batch_gets_record_batches_in_a_pipeline(
        tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id\n1\n2\n3\n")
    sink = ArrowOverrideSink()
    s = Pipeline(ArrowCsvSource(str(path))).build(sink).run_sync()
    assert s.records_written == 3 and len(sink.batches) == 1 and sink.rows == []


def test_capabilities_defaults_follow_0_3_0() -> None:
    caps = SinkCapabilities()
    assert (caps.batch_writable_native, caps.arrow_passthrough_native) == (False, False)
    assert (caps.parallel_writes_safe, caps.ordered_writes_required) == (False, True)


def test_router_is_generic_takes_duck_sinks_and_binds_each_target_once() -> None:
    bound: list[str] = []

    class Aware(DuckCollector):
        def bind_context(self, ctx: object) -> None:
            bound.append(f"{self.sink_name}:{ctx}")

    evens, rest = Aware("evens"), DuckCollector("rest")
    router = (SinkRouter[int]().route(lambda v: v % 2 == 0, evens)
              .route(lambda v: v == 4, evens).default(rest))
    assert len(router.sinks) == 2
    router.bind_context("ctx")
    assert bound == ["evens:ctx"]
    s = Pipeline(IterableSource([1, 2, 3, 4])).route(router).run_sync()
    assert evens.records == [2, 4] and rest.records == [1, 3] and s.records_written == 4


def test_router_target_that_is_not_a_sink_is_refused() -> None:
    with pytest.raises(TypeError, match=r"SinkRouter.default\(\) needs a sink"):
        SinkRouter().default(object())
