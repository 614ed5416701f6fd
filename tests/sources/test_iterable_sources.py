"""IterableSource, IterableBatchSource and ArrowBatchSource: planes, checkpoints, resume,
lifecycle misuse and bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from agora.errors import CheckpointError, LifecycleError
from agora.planes import DataPlane, SourceDataPlaneSpec
from agora.records import MalformedRecord
from agora.sources import ArrowBatchSource, IterableBatchSource, IterableSource
from tests.sources.source_checks import (
    assert_resume_exact,
    checkpoint_for,
    drain,
    drain_with_checkpoints,
)

ROWS = [{"id": i, "name": f"n{i}"} for i in range(5)]


# -- planes and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "plane", "name"),
    [
        (IterableSource(ROWS), DataPlane.PYTHON_ROWS, "iterable"),
        (IterableBatchSource([ROWS]), DataPlane.PYTHON_BATCHES, "iterable_batches"),
        (ArrowBatchSource(pa.Table.from_pylist(ROWS)), DataPlane.ARROW_BATCHES, "arrow_batches"),
    ],
)
def test_declares_its_plane_explicitly(source, plane, name) -> None:
    assert source.data_plane_spec() == SourceDataPlaneSpec.for_plane(name, plane)
    assert source.source_name == name
    assert source.supports_checkpoint is True


def test_name_argument_overrides_the_default() -> None:
    assert IterableSource(ROWS, name="users").source_name == "users"
    with pytest.raises(ValueError, match="non-empty"):
        IterableSource(ROWS, name="")


# -- IterableSource -----------------------------------------------------------------------


def test_iterable_source_emits_rows_and_counts_them() -> None:
    units, checkpoints = drain_with_checkpoints(IterableSource(ROWS))
    assert units == ROWS
    assert checkpoints == [1, 2, 3, 4, 5]


def test_iterable_source_resumes_exactly_at_every_boundary() -> None:
    assert assert_resume_exact(lambda: IterableSource(ROWS)) == 5


def test_iterable_source_resumes_from_a_fresh_iterator() -> None:
    src = IterableSource(iter(ROWS))
    assert drain(src, 3, resume=True) == ROWS[3:]


def test_iterable_source_passes_malformed_markers_through() -> None:
    bad = MalformedRecord(raw="x", reason="r", location="here")
    assert drain(IterableSource([ROWS[0], bad])) == [ROWS[0], bad]


def test_iterable_source_emits_opaque_records_as_given() -> None:
    assert drain(IterableSource([ROWS[0], 7, "x"])) == [ROWS[0], 7, "x"]


def test_iterable_source_rejects_a_non_iterable() -> None:
    with pytest.raises(TypeError, match="iterable of dicts"):
        IterableSource(42)  # type: ignore[arg-type]


def test_iterable_source_input_shorter_than_checkpoint_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="after item 9, but the input has only 5"):
        drain(IterableSource(ROWS), 9, resume=True)


@pytest.mark.parametrize("value", [-1, "3", 1.5, True, {"row": 1}, None])
def test_iterable_source_rejects_a_checkpoint_of_the_wrong_shape(value) -> None:
    with pytest.raises(CheckpointError, match=r"'iterable'.*expected an int >= 0"):
        drain(IterableSource(ROWS), value, resume=True)


def test_iterable_source_closes_a_generator_it_pulled_from() -> None:
    closed = []

    def gen():
        try:
            yield from ROWS
        finally:
            closed.append(True)

    async def go() -> None:
        src = IterableSource(gen())
        await src.open()
        agen = src.stream()
        assert await agen.__anext__() == ROWS[0]
        await agen.aclose()
        await src.close()

    asyncio.run(go())
    assert closed == [True]


# -- lifecycle (shared by every built-in; exercised here once) ----------------------------


def test_a_read_of_an_unopened_source_opens_and_closes_it_for_that_read() -> None:
    async def go() -> tuple[list[Any], list[Any], str]:
        src = IterableSource(lambda: iter(ROWS))
        first = [r async for r in src.stream()]
        again = [r async for r in src.stream()]  # back to fresh: reads from the start
        return first, again, src._state.value

    first, again, state = asyncio.run(go())
    assert first == again == list(ROWS) and state == "new"


def test_a_read_of_an_unopened_source_resumes_at_a_prepared_checkpoint() -> None:
    async def go() -> list[Any]:
        src = IterableSource(ROWS)
        await src.prepare_resume(checkpoint_for(src, 1))
        return [r async for r in src.stream()]

    assert asyncio.run(go()) == list(ROWS)[1:]


def test_a_read_given_up_part_way_closes_the_source_it_opened() -> None:
    closed: list[bool] = []

    def gen() -> Iterator[dict[str, int]]:
        try:
            yield from ROWS
        finally:
            closed.append(True)

    async def go() -> str:
        src = IterableSource(gen)
        reader = src.stream()
        await reader.__anext__()
        await reader.aclose()
        return src._state.value

    assert asyncio.run(go()) == "new" and closed == [True]


def test_stream_after_close_is_a_lifecycle_error() -> None:
    async def go() -> None:
        src = IterableSource(ROWS)
        await src.open()
        await src.close()
        async for _ in src.stream():
            pass

    with pytest.raises(LifecycleError, match="call open\\(\\) first"):
        asyncio.run(go())


def test_prepare_resume_after_open_is_a_lifecycle_error() -> None:
    async def go() -> None:
        src = IterableSource(ROWS)
        await src.open()
        try:
            await src.prepare_resume(checkpoint_for(src, 1))
        finally:
            await src.close()

    with pytest.raises(LifecycleError, match="before open"):
        asyncio.run(go())


def test_open_twice_and_reopen_after_close_are_lifecycle_errors() -> None:
    async def go(close_first: bool) -> None:
        src = IterableSource(ROWS)
        await src.open()
        if close_first:
            await src.close()
        try:
            await src.open()
        finally:
            await src.close()

    for close_first in (False, True):
        with pytest.raises(LifecycleError, match=r"already (open|closed); call prepare_resume"):
            asyncio.run(go(close_first))


def test_close_is_idempotent_and_fine_unopened() -> None:
    async def go() -> None:
        src = IterableSource(ROWS)
        await src.close()
        await src.close()
        opened = IterableSource(ROWS)
        await opened.open()
        await opened.close()
        await opened.close()

    asyncio.run(go())


def test_checkpoint_from_another_source_is_refused() -> None:
    from agora.records import Checkpoint

    async def go() -> None:
        src = IterableSource(ROWS)
        await src.prepare_resume(Checkpoint("p", "r", "other", 1))

    with pytest.raises(CheckpointError, match="belongs to source 'other'"):
        asyncio.run(go())


def test_prepare_resume_needs_a_checkpoint_object() -> None:
    async def go() -> None:
        await IterableSource(ROWS).prepare_resume(3)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="agora Checkpoint or None"):
        asyncio.run(go())


def test_prepare_resume_none_is_a_first_run() -> None:
    async def go() -> list:
        src = IterableSource(ROWS)
        await src.prepare_resume(None)
        await src.open()
        try:
            return [r async for r in src.stream()]
        finally:
            await src.close()

    assert asyncio.run(go()) == ROWS


# -- IterableBatchSource ------------------------------------------------------------------

BATCHES = [ROWS[:2], [], ROWS[2:3], ROWS[3:]]


def test_batch_source_emits_non_empty_batches_with_positions() -> None:
    units, checkpoints = drain_with_checkpoints(IterableBatchSource(BATCHES))
    assert units == [ROWS[:2], ROWS[2:3], ROWS[3:]]
    assert checkpoints == [{"batch": 1, "row": 0}, {"batch": 3, "row": 0}, {"batch": 4, "row": 0}]


def test_batch_source_resumes_exactly_at_every_boundary() -> None:
    assert assert_resume_exact(lambda: IterableBatchSource(BATCHES)) == 3


def test_batch_source_resumes_inside_a_batch() -> None:
    src = IterableBatchSource(BATCHES)
    assert drain(src, {"batch": 3, "row": 1}, resume=True) == [ROWS[4:]]


def test_batch_source_accepts_tuples_and_rejects_other_batches() -> None:
    assert drain(IterableBatchSource([tuple(ROWS[:2])])) == [ROWS[:2]]
    with pytest.raises(TypeError, match="batch 1 is a dict"):
        drain(IterableBatchSource([ROWS[:1], ROWS[0]]))
    with pytest.raises(TypeError, match="iterable of lists"):
        IterableBatchSource(3)  # type: ignore[arg-type]


def test_batch_source_checkpoint_within_last_batch_is_exact() -> None:
    async def go() -> tuple:
        src = IterableBatchSource(BATCHES)
        await src.prepare_resume(checkpoint_for(src, {"batch": 3, "row": 1}))
        await src.open()
        agen = src.stream_batches()
        batch = await agen.__anext__()
        within = src.checkpoint_within_last_batch(1)
        await agen.aclose()
        await src.close()
        return batch, within

    batch, within = asyncio.run(go())
    assert batch == ROWS[4:]
    assert within == {"batch": 3, "row": 2}


def test_batch_source_checkpoint_within_before_any_batch_is_an_error() -> None:
    with pytest.raises(LifecycleError, match="no batch"):
        IterableBatchSource(BATCHES).checkpoint_within_last_batch(1)


@pytest.mark.parametrize(
    "value", [3, {"batch": 1}, {"batch": 1, "row": -1}, {"batch": 1, "row": 0, "x": 1}]
)
def test_batch_source_rejects_a_checkpoint_of_the_wrong_shape(value) -> None:
    with pytest.raises(CheckpointError, match=r'expected \{"batch": <int >= 0>'):
        drain(IterableBatchSource(BATCHES), value, resume=True)


def test_batch_source_checkpoint_past_the_input_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="only 4"):
        drain(IterableBatchSource(BATCHES), {"batch": 9, "row": 0}, resume=True)
    with pytest.raises(CheckpointError, match="a row offset <= 1"):
        drain(IterableBatchSource(BATCHES), {"batch": 2, "row": 5}, resume=True)


# -- ArrowBatchSource ---------------------------------------------------------------------

TABLE = pa.Table.from_pylist([{"id": i, "s": f"é{i}"} for i in range(10)])


def test_arrow_source_splits_a_table_by_batch_size() -> None:
    units, checkpoints = drain_with_checkpoints(ArrowBatchSource(TABLE, batch_size=4))
    assert [b.num_rows for b in units] == [4, 4, 2]
    assert checkpoints == [{"row": 4}, {"row": 8}, {"row": 10}]
    assert pa.Table.from_batches(units).equals(TABLE)


@pytest.mark.parametrize("batch_size", [1, 3, 4, None])
def test_arrow_table_source_resumes_exactly(batch_size) -> None:
    assert assert_resume_exact(lambda: ArrowBatchSource(TABLE, batch_size=batch_size)) >= 1


def test_arrow_iterable_source_resumes_exactly() -> None:
    batches = TABLE.to_batches(max_chunksize=3)
    assert assert_resume_exact(lambda: ArrowBatchSource(iter(batches))) == 4


def test_arrow_source_accepts_a_single_batch_and_skips_empty_ones() -> None:
    batch = TABLE.to_batches()[0]
    assert drain(ArrowBatchSource(batch))[0].equals(batch)
    empty = batch.slice(0, 0)
    assert [b.num_rows for b in drain(ArrowBatchSource([empty, batch, empty]))] == [10]


def test_arrow_source_resume_inside_a_batch_emits_a_compact_slice() -> None:
    batches = TABLE.to_batches(max_chunksize=4)
    for data in (TABLE, batches):
        units = drain(ArrowBatchSource(data, batch_size=4), {"row": 5}, resume=True)
        assert units[0].to_pylist() == TABLE.slice(5, 3).to_pylist()
        assert units[0].column(0).offset == 0


def test_arrow_source_checkpoint_within_last_batch_is_exact() -> None:
    async def go() -> dict:
        src = ArrowBatchSource(TABLE, batch_size=4)
        await src.open()
        agen = src.stream_batches()
        await agen.__anext__()
        await agen.__anext__()
        within = src.checkpoint_within_last_batch(3)
        await agen.aclose()
        await src.close()
        return within

    assert asyncio.run(go()) == {"row": 7}
    with pytest.raises(LifecycleError, match="no batch"):
        ArrowBatchSource(TABLE).checkpoint_within_last_batch(1)


def test_arrow_source_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="pyarrow.Table or an iterable"):
        ArrowBatchSource(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 0 is a dict; expected pyarrow.RecordBatch"):
        drain(ArrowBatchSource([{"a": 1}]))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ArrowBatchSource(TABLE, batch_size=0)


def test_arrow_source_checkpoint_past_the_input_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="only 10"):
        drain(ArrowBatchSource(TABLE), {"row": 11}, resume=True)
    with pytest.raises(CheckpointError, match="only 10"):
        drain(ArrowBatchSource(TABLE.to_batches()), {"row": 11}, resume=True)
    with pytest.raises(CheckpointError, match=r'expected \{"row": <int >= 0>\}'):
        drain(ArrowBatchSource(TABLE), 4, resume=True)


def test_checkpoints_are_json_values() -> None:
    for src in (IterableSource(ROWS), IterableBatchSource(BATCHES), ArrowBatchSource(TABLE)):
        _, checkpoints = drain_with_checkpoints(src)
        assert json.loads(json.dumps(checkpoints)) == checkpoints
