"""Programs written against upstream's builder spellings run unchanged: ``config=``,
``build()`` with no sink, ``run_id=``, ``Pipeline.filter``, ``BaseSource.limit``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass

import pytest

from agora import (
    Checkpoint,
    DeliveryConfig,
    InMemoryCheckpointStore,
    IterableBatchSource,
    IterableSource,
    MemorySink,
    Pipeline,
    PipelineError,
    SinkFanOut,
    SinkRouter,
    StdoutSink,
)


@dataclass(frozen=True)
class Order:
    id: int
    qty: int


def test_build_accepts_config_as_the_delivery_alias() -> None:
    config = DeliveryConfig(batch_size=7)
    bound = Pipeline(IterableSource([1, 2])).build(MemorySink(), config=config)
    assert bound.delivery is config


def test_build_with_both_delivery_and_config_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"build\(\) got both delivery= and config=.*pass only delivery="):
        Pipeline(IterableSource([1])).build(MemorySink(), delivery=DeliveryConfig(),
                                            config=DeliveryConfig())


def test_fan_out_accepts_config_and_refuses_both() -> None:
    config = DeliveryConfig(batch_size=3)
    bound = Pipeline(IterableSource([1])).fan_out([MemorySink(name="a"), MemorySink(name="b")], config=config)
    assert bound.delivery is config
    with pytest.raises(TypeError, match=r"fan_out\(\) got both"):
        Pipeline(IterableSource([1])).fan_out([MemorySink()], delivery=config, config=config)


def test_route_accepts_config_and_refuses_both() -> None:
    config = DeliveryConfig(batch_size=3)
    router = SinkRouter().route(lambda r: True, MemorySink())
    assert Pipeline(IterableSource([1])).route(router, config=config).delivery is config
    with pytest.raises(TypeError, match=r"route\(\) got both"):
        Pipeline(IterableSource([1])).route(router, delivery=config, config=config)


def test_build_without_a_sink_writes_json_lines_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    bound = Pipeline(IterableSource([{"a": 1}, {"a": 2}])).build()
    assert isinstance(bound.writer, StdoutSink)
    bound.run_sync()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"a": 2}]


def test_run_sync_with_run_id_names_the_run_in_the_summary() -> None:
    summary = Pipeline(IterableSource([1, 2, 3])).build(MemorySink()).run_sync(run_id="nightly-42")
    assert summary.run_id == "nightly-42"


def test_async_run_with_run_id_names_the_run_and_its_checkpoint() -> None:
    store = InMemoryCheckpointStore()
    bound = Pipeline(IterableSource([1, 2, 3]), id="p").build(
        MemorySink(), delivery=DeliveryConfig(checkpoint=store))
    summary = asyncio.run(bound.run(run_id="r-1"))
    assert summary.run_id == "r-1"
    saved = asyncio.run(store.load("p"))
    assert saved is not None and saved.run_id == "r-1"


def test_run_without_run_id_gets_a_fresh_one_each_time() -> None:
    bound = Pipeline(IterableSource([1])).build(MemorySink())
    assert bound.run_sync().run_id != bound.run_sync().run_id


@pytest.mark.parametrize("bad", ["", 5])
def test_a_bad_run_id_is_refused_before_anything_runs(bad: object) -> None:
    sink = MemorySink()
    with pytest.raises(PipelineError, match="run_id must be a non-empty string"):
        Pipeline(IterableSource([1])).build(sink).run_sync(run_id=bad)  # type: ignore[arg-type]
    assert sink.records == []


def test_pipeline_filter_keeps_records_the_predicate_accepts() -> None:
    sink = MemorySink()
    Pipeline(IterableSource(range(10))).filter(lambda n: n % 3 == 0).build(sink).run_sync()
    assert sink.records == [0, 3, 6, 9]


def test_pipeline_filter_returns_a_new_pipeline() -> None:
    base = Pipeline(IterableSource([1]))
    filtered = base.filter(bool)
    assert filtered is not base and base.middleware == () and len(filtered.middleware) == 1


def test_source_limit_reads_at_most_n_records() -> None:
    sink = MemorySink()
    Pipeline(IterableSource(range(100)).limit(5)).build(sink).run_sync()
    assert sink.records == [0, 1, 2, 3, 4]


def test_source_limit_on_a_batch_source_trims_the_last_batch() -> None:
    sink = MemorySink()
    Pipeline(IterableBatchSource([[1, 2, 3], [4, 5, 6]]).limit(4)).build(sink).run_sync()
    assert sink.records == [1, 2, 3, 4]


@pytest.mark.parametrize(("bad", "error"), [(-1, ValueError), ("3", TypeError)])
def test_source_limit_rejects_a_bad_count_naming_the_source(bad: object, error: type) -> None:
    with pytest.raises(error, match="source 'orders'"):
        IterableSource([1], name="orders").limit(bad)  # type: ignore[arg-type]


def test_opaque_records_flow_from_iterable_source_to_a_memory_sink() -> None:
    sink = MemorySink()
    Pipeline(IterableSource([Order(1, 2), Order(2, 5)])).build(sink).run_sync()
    assert sink.records == [Order(1, 2), Order(2, 5)]


def test_iterable_source_and_iterable_batch_source_agree_on_opaque_records() -> None:
    rows, batches = MemorySink(), MemorySink()
    Pipeline(IterableSource([1, 2, 3])).build(rows).run_sync()
    Pipeline(IterableBatchSource([[1, 2], [3]])).build(batches).run_sync()
    assert rows.records == batches.records == [1, 2, 3]


def test_fan_out_with_opaque_records_reaches_every_sink() -> None:
    a, b = MemorySink(name="a"), MemorySink(name="b")
    Pipeline(IterableSource(["x", "y"])).fan_out(SinkFanOut([a, b])).run_sync()
    assert a.records == b.records == ["x", "y"]


def test_checkpoint_accepts_a_datetime_and_keeps_it_as_iso_text() -> None:
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cp = Checkpoint("p", "r", "s", 3, recorded_at=stamp)
    assert cp.recorded_at == stamp.isoformat()
    assert cp.recorded_at_datetime == stamp


def test_checkpoint_with_a_naive_datetime_is_taken_as_utc() -> None:
    cp = Checkpoint("p", "r", "s", 3, recorded_at=dt.datetime(2026, 1, 2))
    assert cp.recorded_at_datetime.tzinfo is dt.UTC


def test_checkpoint_with_a_datetime_round_trips_through_a_store() -> None:
    store = InMemoryCheckpointStore()
    cp = Checkpoint("p", "r", "s", 3, recorded_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    asyncio.run(store.save("p", cp))
    assert asyncio.run(store.load("p")) == cp


def test_checkpoint_refuses_a_recorded_at_of_another_type() -> None:
    with pytest.raises(TypeError, match="recorded_at must be an ISO string or a datetime; got int"):
        Checkpoint("p", "r", "s", 3, recorded_at=12)  # type: ignore[arg-type]


def test_with_sink_binds_a_new_pipeline_and_leaves_the_first_as_it_was() -> None:
    first_sink, second_sink = MemorySink(name="first"), MemorySink(name="second")
    delivery = DeliveryConfig(batch_size=2)
    bound = Pipeline(IterableSource([{"id": 1}, {"id": 2}])).build(first_sink, delivery=delivery)
    other = bound.with_sink(second_sink)
    assert other is not bound and other.delivery is delivery and bound.writer is first_sink
    other.run_sync()
    assert second_sink.records == [{"id": 1}, {"id": 2}] and first_sink.records == []
    with pytest.raises(TypeError, match="needs a sink.*object has no async open, write, close"):
        bound.with_sink(object())
