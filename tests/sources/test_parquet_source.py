"""ParquetSource: streaming by row group, column selection, exact resume that skips row
groups by metadata, empty files, missing files and bad checkpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora.errors import CheckpointError
from agora.planes import DataPlane
from agora.sources import ParquetSource
from tests.sources.source_checks import (
    assert_resume_exact,
    drain,
    drain_with_checkpoints,
    parquet_at,
    positions,
)

TABLE = pa.table({"id": list(range(10)), "name": [f"名{i}" for i in range(10)]})


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    pq.write_table(TABLE, path, row_group_size=4)  # groups of 4, 4, 2
    return path


def test_parquet_emits_compact_batches_within_row_groups(parquet: Path) -> None:
    src = ParquetSource(parquet, batch_size=3)
    assert src.source_name == "parquet:data.parquet"
    assert src.emitted_data_plane is DataPlane.ARROW_BATCHES
    units, checkpoints = drain_with_checkpoints(src)
    assert [b.num_rows for b in units] == [3, 1, 3, 1, 2]
    assert positions(checkpoints)[-1] == {"row": 10}
    assert pa.Table.from_batches(units).equals(TABLE)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 100])
def test_parquet_resume_is_exact_at_every_boundary(parquet: Path, batch_size: int) -> None:
    n = assert_resume_exact(lambda: ParquetSource(parquet, batch_size=batch_size))
    assert n >= 3


def test_parquet_resume_inside_a_group_slices_compactly(parquet: Path) -> None:
    units = drain(ParquetSource(parquet, batch_size=4), parquet_at(parquet, 5), resume=True)
    assert [b.num_rows for b in units] == [3, 2]
    assert units[0].column(0).offset == 0
    assert units[0].column("id").to_pylist() == [5, 6, 7]


def test_parquet_resume_does_not_read_skipped_row_groups(
    parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[int]] = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(list(kwargs["row_groups"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    drain(ParquetSource(parquet), parquet_at(parquet, 8), resume=True)
    assert asked == [[2]]


def test_parquet_columns_select_and_unknown_columns_are_refused(parquet: Path) -> None:
    units = drain(ParquetSource(parquet, columns=["name"]))
    assert units[0].schema.names == ["name"]
    with pytest.raises(ValueError, match=r"no column\(s\) \['nope'\]; its columns are"):
        drain(ParquetSource(parquet, columns=["nope"]))
    with pytest.raises(TypeError, match=r"did you mean \['id'\]"):
        ParquetSource(parquet, columns="id")  # type: ignore[arg-type]


def test_parquet_empty_file_emits_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(TABLE.slice(0, 0), path)
    assert drain(ParquetSource(path)) == []
    assert assert_resume_exact(lambda: ParquetSource(path)) == 0


def test_parquet_checkpoint_past_the_file_is_refused(parquet: Path) -> None:
    with pytest.raises(CheckpointError, match="after row 11 but .* has 10 rows"):
        drain(ParquetSource(parquet), parquet_at(parquet, 11), resume=True)
    assert drain(ParquetSource(parquet), parquet_at(parquet, 10), resume=True) == []


@pytest.mark.parametrize("value", [10, {"rows": 1}, {"row": -1}, {"row": None}])
def test_parquet_checkpoint_of_the_wrong_shape_is_refused(parquet: Path, value) -> None:
    if isinstance(value, dict):
        value = {**value, "input": parquet_at(parquet, 0)["input"]}
    with pytest.raises(CheckpointError, match=r"'parquet:data.parquet'.*expected \{\"row\""):
        drain(ParquetSource(parquet), value, resume=True)


def test_parquet_checkpoint_within_last_batch(parquet: Path) -> None:
    async def go() -> dict:
        src = ParquetSource(parquet, batch_size=3)
        await src.open()
        agen = src.stream_batches()
        await agen.__anext__()
        await agen.__anext__()
        within = src.checkpoint_within_last_batch(1)
        await agen.aclose()
        await src.close()
        return within

    assert asyncio.run(go()) == parquet_at(parquet, 4)


def test_parquet_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source 'parquet:x.parquet'"):
        drain(ParquetSource(tmp_path / "x.parquet"))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ParquetSource(tmp_path / "x.parquet", batch_size=0)
