"""A file source's checkpoint identifies its input: resuming over a replaced, edited or
truncated file is a CheckpointError naming the file; resuming over an appended one reads
exactly the appended records; a checkpoint without the identity is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora import DeliveryConfig, SyncInMemoryCheckpointStore, MemorySink, Pipeline
from agora.errors import CheckpointError
from agora.sources import (
    ArrowCsvSource,
    ArrowJsonLinesSource,
    BaseSource,
    CsvSource,
    JsonLinesSource,
    ParquetSource,
)
from tests.sources.source_checks import drain, drain_with_checkpoints, rows_of

RESET_HINT = r"agora checkpoint reset STORE --key KEY\) or run with a new checkpoint_key"


def csv_text(values: list[int], *, final_newline: bool = True) -> bytes:
    text = "a\n" + "\n".join(str(v) for v in values)
    return (text + ("\n" if final_newline else "")).encode()


def jsonl_text(values: list[int], *, final_newline: bool = True) -> bytes:
    text = "\n".join(json.dumps({"a": v}) for v in values)
    return (text + ("\n" if final_newline else "")).encode()


TEXT_KINDS: dict[str, tuple[Callable[[Path], BaseSource], Callable[..., bytes]]] = {
    "csv": (lambda p: CsvSource(p), csv_text),
    "csv_batches": (lambda p: CsvSource(p, batch_size=2), csv_text),
    "arrow_csv": (lambda p: ArrowCsvSource(p, block_size=16), csv_text),
    "jsonl": (lambda p: JsonLinesSource(p), jsonl_text),
    "arrow_jsonl": (lambda p: ArrowJsonLinesSource(p, block_size=16), jsonl_text),
}


def values(units: list[Any]) -> list[int]:
    return [int(row["a"]) for row in rows_of(units)]


def first_run(path: Path, kind: str, original: list[int], **text: bool) -> Any:
    make, render = TEXT_KINDS[kind]
    path.write_bytes(render(original, **text))
    units, checkpoints = drain_with_checkpoints(make(path))
    assert values(units) == original
    return checkpoints[-1]


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_a_replaced_file_of_the_same_length_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    checkpoint = first_run(path, kind, [1, 2, 3])
    make, render = TEXT_KINDS[kind]
    path.write_bytes(render([7, 8, 9, 10, 11]))  # the original's prefix length, other bytes
    with pytest.raises(CheckpointError) as info:
        drain(make(path), checkpoint, resume=True)
    message = str(info.value)
    assert repr(str(path)) in message
    assert "differ from the file the checkpoint was taken on" in message
    assert pytest.importorskip("re").search(RESET_HINT, message)
    # Starting over (no checkpoint) reads every record of the new file.
    assert values(drain(make(path))) == [7, 8, 9, 10, 11]


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_an_edited_record_before_the_checkpoint_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    checkpoint = first_run(path, kind, [10, 20, 30])
    make, render = TEXT_KINDS[kind]
    path.write_bytes(render([10, 21, 30, 40]))  # one digit changed, then an append
    with pytest.raises(CheckpointError, match="replaced or edited"):
        drain(make(path), checkpoint, resume=True)


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_a_truncated_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    checkpoint = first_run(path, kind, [1, 2, 3])
    make, render = TEXT_KINDS[kind]
    path.write_bytes(render([1, 2]))
    with pytest.raises(CheckpointError, match=r"was truncated or replaced") as info:
        drain(make(path), checkpoint, resume=True)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_an_appended_file_resumes_with_exactly_the_new_records(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    checkpoint = first_run(path, kind, [1, 2, 3])
    make, render = TEXT_KINDS[kind]
    path.write_bytes(render([1, 2, 3, 4, 5, 6]))
    assert values(drain(make(path), checkpoint, resume=True)) == [4, 5, 6]


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_every_mid_file_checkpoint_resumes_exactly_after_an_append(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "daily.txt"
    make, render = TEXT_KINDS[kind]
    original = list(range(1, 9))
    path.write_bytes(render(original))
    units, checkpoints = drain_with_checkpoints(make(path))
    path.write_bytes(render(original + [100, 101]))
    for k, checkpoint in enumerate(checkpoints):
        expected = values(units[k + 1:]) + [100, 101]
        assert values(drain(make(path), checkpoint, resume=True)) == expected, (kind, k)


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_a_last_line_without_newline_may_not_be_extended(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    checkpoint = first_run(path, kind, [1, 2], final_newline=False)
    make, render = TEXT_KINDS[kind]
    original = render([1, 2], final_newline=False)
    path.write_bytes(original + b"5\n")  # the consumed last record itself grew
    with pytest.raises(CheckpointError, match="was extended since"):
        drain(make(path), checkpoint, resume=True)
    record = render([4]) if render is jsonl_text else b"4\n"
    path.write_bytes(original + b"\n" + record)  # a proper append on a new line
    assert values(drain(make(path), checkpoint, resume=True)) == [4]


@pytest.mark.parametrize("kind", [*TEXT_KINDS, "parquet"])
def test_a_checkpoint_without_input_identity_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    if kind == "parquet":
        pq.write_table(pa.table({"a": [1, 2, 3]}), path)
        make: Callable[[Path], BaseSource] = ParquetSource
        _, checkpoints = drain_with_checkpoints(make(path))
        checkpoint = checkpoints[-1]
    else:
        checkpoint = first_run(path, kind, [1, 2, 3])
        make = TEXT_KINDS[kind][0]
    legacy = {k: v for k, v in checkpoint.items() if k != "input"}  # as older versions wrote
    with pytest.raises(CheckpointError) as info:
        drain(make(path), legacy, resume=True)
    message = str(info.value)
    assert "does not identify the input" in message and str(path) in message
    assert pytest.importorskip("re").search(RESET_HINT, message)


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_a_malformed_fingerprint_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "daily.txt"
    checkpoint = first_run(path, kind, [1, 2, 3])
    for broken in ({"consumed": -1, "sha256": "0" * 64}, {"consumed": 3}, "abc",
                   {"consumed": 3, "sha256": 5}):
        with pytest.raises(CheckpointError, match="is not one this source wrote"):
            drain(TEXT_KINDS[kind][0](path), {**checkpoint, "input": broken}, resume=True)


# -- Parquet ------------------------------------------------------------------------------


def test_parquet_resume_over_the_same_file_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": list(range(10))}), path, row_group_size=4)
    units, checkpoints = drain_with_checkpoints(ParquetSource(path, batch_size=3))
    assert values(drain(ParquetSource(path, batch_size=3), checkpoints[1], resume=True)) == (
        values(units[2:])
    )


@pytest.mark.parametrize(
    "replacement",
    [
        pa.table({"a": [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}),  # same shape, other values
        pa.table({"a": list(range(12))}),  # the same rows and more
        pa.table({"a": list(range(10))}),  # identical rows, rewritten with other row groups
    ],
    ids=["other-values", "appended", "rewritten"],
)
def test_parquet_resume_over_a_rewritten_file_is_refused(tmp_path: Path, replacement) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": list(range(10))}), path, row_group_size=4)
    _, checkpoints = drain_with_checkpoints(ParquetSource(path))
    pq.write_table(replacement, path, row_group_size=3)
    with pytest.raises(CheckpointError, match="cannot resume over .*d.parquet") as info:
        drain(ParquetSource(path), checkpoints[-1], resume=True)
    assert "reset the checkpoint" in str(info.value)


def test_parquet_checkpoint_with_a_broken_identity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    with pytest.raises(CheckpointError, match="is not one this source wrote"):
        drain(ParquetSource(path), {"row": 0, "input": {"size": 1}}, resume=True)


# -- through a pipeline --------------------------------------------------------------------


def test_a_replaced_daily_file_stops_the_next_run_before_anything_is_read(tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_bytes(csv_text([1, 2, 3]))
    sink = MemorySink()
    bound = Pipeline(CsvSource(path), id="daily").build(
        sink, delivery=DeliveryConfig(checkpoint=SyncInMemoryCheckpointStore())
    )
    assert bound.run_sync().records_consumed == 3
    path.write_bytes(csv_text([7, 8, 9, 10, 11]))
    with pytest.raises(CheckpointError, match="daily.csv"):
        bound.run_sync()
    assert [r["a"] for r in sink.records] == ["1", "2", "3"]  # nothing skipped, nothing added
    path.write_bytes(csv_text([1, 2, 3, 4, 5]))  # back to the original, appended
    assert bound.run_sync().records_consumed == 2
    assert [r["a"] for r in sink.records] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("kind", [*TEXT_KINDS, "parquet"])
def test_every_checkpoint_error_of_a_file_source_names_the_file(tmp_path: Path, kind) -> None:
    path = tmp_path / "named.txt"
    path.write_bytes(b"a\n1\n")
    if kind == "parquet":
        pq.write_table(pa.table({"a": [1]}), path)
    make = ParquetSource if kind == "parquet" else TEXT_KINDS[kind][0]
    for value in (7, {"row": "x", "input": {}}, [1]):  # shapes no source writes
        with pytest.raises(CheckpointError, match="named.txt") as info:
            drain(make(path), value, resume=True)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", list(TEXT_KINDS))
def test_an_empty_file_that_gets_records_later_is_read_in_full_on_resume(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "daily.txt"
    path.write_bytes(b"")
    make, render = TEXT_KINDS[kind]
    units, checkpoints = drain_with_checkpoints(make(path))
    assert units == []
    src = make(path)
    drain(src)
    empty_end = src.current_checkpoint()
    path.write_bytes(render([1, 2, 3]))
    assert values(drain(make(path), empty_end, resume=True)) == [1, 2, 3]


def test_a_fingerprint_read_while_another_thread_feeds_the_hash_is_always_whole() -> None:
    """pyarrow's CSV reader may read ahead on a thread of its own, feeding the source's
    running hash while the read-ahead thread takes a checkpoint's fingerprint: the
    fingerprint must name a byte count and the hash of exactly those bytes, never the
    count before a chunk and the hash after it (a resume would then refuse an unchanged
    file as edited)."""
    import hashlib
    import sys
    import threading

    from agora.sources.identity import PrefixHash

    data = bytes(range(256)) * 512  # 128 KiB, fed in 1-byte to 97-byte chunks
    running = PrefixHash().shared()
    done = threading.Event()
    torn: list[tuple[int, str]] = []

    def feed() -> None:
        at, size = 0, 1
        while at < len(data):
            running.update(data[at : at + size])
            at += size
            size = size % 97 + 1
        done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        feeder = threading.Thread(target=feed)
        feeder.start()
        while not done.is_set():
            ident = running.identity()
            if hashlib.sha256(data[: ident["consumed"]]).hexdigest() != ident["sha256"]:
                torn.append((ident["consumed"], ident["sha256"]))
        feeder.join()
    finally:
        sys.setswitchinterval(interval)
    assert torn == []
    assert running.identity() == {"consumed": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest()}


def test_the_screen_pyarrow_reads_from_its_own_thread_feeds_a_shared_hash(tmp_path) -> None:
    import hashlib

    import pyarrow.csv as pa_csv

    from agora.sources._csvscreen import screen_for
    from agora.sources.identity import PrefixHash, SharedPrefixHash

    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,2\n")
    plain = PrefixHash()
    with open(path, "rb") as fh:
        screen = screen_for(fh, pa_csv.ReadOptions(), pa_csv.ParseOptions(), header=1,
                            max_record_bytes=1 << 20, hasher=plain)
        assert isinstance(screen.hasher, SharedPrefixHash)
        assert not isinstance(plain, SharedPrefixHash)
        assert screen.read() == b"a,b\n1,2\n"
    assert screen.hasher.identity() == {
        "consumed": 8, "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest()}
