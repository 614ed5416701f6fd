"""ParquetSink's dataset layout: one part per flush committed by a manifest, readable as a
folder by dataset readers; resumes that never read the earlier parts; strays, damage and
the other layout's output refused with errors that say what to do."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from agora.sinks._parquet_dataset import MANIFEST_NAME, PARTIAL_NAME
from agora.sinks.parquet import ParquetSink


def ids(path: Path) -> list[int]:
    """The output as a dataset reader sees it (hidden and ``_`` files skipped)."""
    return [int(v) for v in ds.dataset(path, format="parquet").to_table()
            .column("n").to_pylist()]


def visible(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if not p.name.startswith((".", "_")))


def manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / MANIFEST_NAME).read_text())
    return data


async def run(sink: ParquetSink, *batches: list[int], close: bool = True) -> None:
    """Open, write each batch and flush it (one part each), then close — or not."""
    await sink.open()
    for values in batches:
        await sink.write_arrow_batch(pa.record_batch({"n": pa.array(values, pa.int64())}))
        await sink.flush()
    if close:
        await sink.close()
    else:
        sink._discard_partial()  # what dying leaves: sealed parts, no close()


def resumed(path: Path, **kwargs: Any) -> ParquetSink:
    sink = ParquetSink(path, **kwargs)
    sink.resume_output()  # what the runtime does when it resumes from a checkpoint
    return sink


def test_each_flush_is_a_readable_part_and_close_only_commits(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    sink = ParquetSink(path)

    async def main() -> None:
        await sink.open()
        await sink.write_batch([{"n": 1}, {"n": 2}])
        await sink.flush()
        await sink.write_arrow_batch(pa.record_batch({"n": pa.array([3], pa.int64())}))
        await sink.flush()
        await sink.flush()  # nothing new: no empty part
        # While open, readers see exactly the sealed parts; the partial file is hidden.
        assert visible(path) == ["part-000000.parquet", "part-000001.parquet"]
        assert (path / PARTIAL_NAME).exists()
        assert ids(path) == [1, 2, 3]
        await sink.write({"n": 4})
        await sink.close()

    asyncio.run(main())
    assert ids(path) == [1, 2, 3, 4] == pq.read_table(path).column("n").to_pylist()
    assert visible(path) == [f"part-00000{i}.parquet" for i in range(3)]
    assert not (path / PARTIAL_NAME).exists()
    recorded = manifest(path)
    assert recorded["pending"] is None
    assert [(p["name"], p["rows"]) for p in recorded["parts"]] == [
        ("part-000000.parquet", 2), ("part-000001.parquet", 1), ("part-000002.parquet", 1)]
    assert os.stat(path).st_mode & 0o777 == 0o700


def test_empty_output_keeps_the_schema_readable(tmp_path: Path) -> None:
    schema = pa.schema([("n", pa.int64()), ("s", pa.string())])
    asyncio.run(run(ParquetSink(tmp_path / "typed", schema=schema)))
    table = pq.read_table(tmp_path / "typed")
    assert table.num_rows == 0 and table.schema.equals(schema)
    asyncio.run(run(ParquetSink(tmp_path / "untyped")))
    assert visible(tmp_path / "untyped") == []
    assert pq.read_table(tmp_path / "untyped").num_rows == 0


def test_resume_and_reopen_continue_without_reading_earlier_parts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1, 2], [3]))
    before = {p.name: os.stat(p) for p in path.glob("part-*")}
    originals = {name: (path / name).read_bytes() for name in before}
    # Scramble the earlier parts in place, keeping size, inode and modification time: a
    # resume that read them (to hash them or take their schema) would fail.
    for name, st in before.items():
        (path / name).write_bytes(b"\0" * st.st_size)
        os.utime(path / name, ns=(st.st_atime_ns, st.st_mtime_ns))
    opened: list[str] = []
    real_open = os.open

    def spy(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append(os.path.basename(os.fsdecode(file)))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    asyncio.run(run(resumed(path), [4]))
    monkeypatch.undo()
    assert not set(opened) & set(before), opened
    for name, st in before.items():
        now = os.stat(path / name)
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (st.st_ino, st.st_mtime_ns,
                                                               st.st_size)
        (path / name).write_bytes(originals[name])
    assert ids(path) == [1, 2, 3, 4]
    # A sink reopened after close() continues too, and its schema came from the manifest.
    sink = resumed(path)
    assert sink.schema is None
    asyncio.run(sink.open())
    assert sink.schema == pa.schema([("n", pa.int64())])  # before any write
    asyncio.run(sink.close())
    asyncio.run(run(sink, [5]))
    asyncio.run(run(sink, [6]))
    assert ids(path) == [1, 2, 3, 4, 5, 6]


def test_a_fresh_sink_starts_the_dataset_over(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], [2]))
    asyncio.run(run(ParquetSink(path), [9]))
    assert ids(path) == [9]
    assert visible(path) == ["part-000000.parquet"]


def test_rows_flushed_before_a_crash_survive_and_the_resume_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1, 2], [3], close=False))
    assert ids(path) == [1, 2, 3]  # readable as soon as sealed, before any close()
    asyncio.run(run(resumed(path), [4]))
    assert ids(path) == [1, 2, 3, 4]


def test_killed_before_a_pending_part_was_renamed_drops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], close=False))
    sink = resumed(path)
    real_replace = os.replace

    def die_at_part_rename(src: Any, dst: Any) -> None:
        if os.path.basename(os.fsdecode(dst)).startswith("part-"):
            raise KeyboardInterrupt("killed between recording and renaming the part")
        real_replace(src, dst)

    async def main() -> None:
        await sink.open()
        await sink.write_arrow_batch(pa.record_batch({"n": pa.array([2], pa.int64())}))
        monkeypatch.setattr(os, "replace", die_at_part_rename)
        with pytest.raises(KeyboardInterrupt):
            await sink.flush()
        monkeypatch.undo()

    asyncio.run(main())
    assert manifest(path)["pending"]["name"] == "part-000001.parquet"
    assert ids(path) == [1]  # the pending part never became visible
    asyncio.run(run(resumed(path), [3]))
    assert ids(path) == [1, 3]  # dropped: its rows are re-emitted from the checkpoint
    assert manifest(path)["pending"] is None


def test_killed_after_a_pending_part_was_renamed_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], [2], close=False))
    recorded = manifest(path)
    # The last sealed part is recorded as pending until the next manifest write: a run
    # that died after its rename leaves it so, and the resume must keep it.
    assert recorded["pending"]["name"] == "part-000001.parquet"
    assert [p["name"] for p in recorded["parts"]] == ["part-000000.parquet"]
    asyncio.run(run(resumed(path), [3]))
    assert ids(path) == [1, 2, 3]


@pytest.mark.parametrize("fresh", [True, False])
def test_a_visible_file_the_manifest_does_not_list_is_refused_and_left(
        tmp_path: Path, fresh: bool) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], close=False))
    planted = path / "part-000007.parquet"
    pq.write_table(pa.table({"n": [666]}), planted)
    before = planted.read_bytes()
    sink = ParquetSink(path) if fresh else resumed(path)
    with pytest.raises(ValueError, match=r"holds part-000007.parquet, which its manifest .* "
                                         r"move them out of the folder"):
        asyncio.run(sink.open())
    assert planted.read_bytes() == before
    planted.unlink()
    assert ids(path) == [1]  # nothing was removed by the refused open
    asyncio.run(run(resumed(path), [2]))
    assert ids(path) == [1, 2]


def test_a_file_planted_at_the_next_part_name_is_skipped_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    sink = ParquetSink(path)

    async def main() -> None:
        await sink.open()
        pq.write_table(pa.table({"n": [666]}), path / "part-000000.parquet")
        await sink.write_arrow_batch(pa.record_batch({"n": pa.array([1], pa.int64())}))
        await sink.close()

    asyncio.run(main())
    assert [p["name"] for p in manifest(path)["parts"]] == ["part-000001.parquet"]
    assert pq.read_table(path / "part-000000.parquet").column("n").to_pylist() == [666]


def test_missing_or_resized_part_fails_the_resume(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], [2]))
    first = path / "part-000000.parquet"
    saved = first.read_bytes()
    first.unlink()
    with pytest.raises(ValueError, match=r"part .*part-000000.parquet listed in .* is missing.*"
                                         r"restore the file"):
        asyncio.run(resumed(path).open())
    first.write_bytes(saved + b"x")
    with pytest.raises(ValueError, match=r"has \d+ bytes, not the \d+ this sink sealed"):
        asyncio.run(resumed(path).open())


def test_part_altered_in_place_is_caught_and_a_restored_copy_is_accepted(
        tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], [2]))
    # A copy of the folder (a restored backup) has other inodes: hashed once, accepted.
    copy = tmp_path / "copy.parquet"
    shutil.copytree(path, copy)
    asyncio.run(run(resumed(copy), [3]))
    assert ids(copy) == [1, 2, 3]
    assert asyncio.run(run(resumed(copy), [4])) is None  # identities were re-recorded
    # Same size, other bytes, a new modification time: the hash gives it away.
    part = path / "part-000001.parquet"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not the file this sink sealed .*SHA-256"):
        asyncio.run(resumed(path).open())


def test_damaged_manifest_or_one_naming_another_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1]))
    (path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=r"dataset manifest .*_agora_manifest.json is damaged"):
        asyncio.run(resumed(path).open())
    recorded = {"format": "agora-parquet-dataset", "version": 1, "schema": None,
                "pending": None, "parts": [{"name": "../../etc/passwd", "size": 1,
                                            "sha256": "0", "rows": 1, "inode": 1,
                                            "mtime_ns": 1}]}
    (path / MANIFEST_NAME).write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="unexpected part name '../../etc/passwd'"):
        asyncio.run(ParquetSink(path).open())


def test_links_at_the_manifest_a_part_or_the_partial_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep")
    (path / PARTIAL_NAME).symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="refusing its temporary file: .*symbolic link"):
        asyncio.run(resumed(path).open())
    (path / PARTIAL_NAME).unlink()
    part = path / "part-000000.parquet"
    shutil.move(part, tmp_path / "real-part")
    part.symlink_to(tmp_path / "real-part")
    with pytest.raises(PermissionError, match="refusing the part file: .*symbolic link"):
        asyncio.run(resumed(path).open())
    part.unlink()
    shutil.move(tmp_path / "real-part", part)
    shutil.move(path / MANIFEST_NAME, tmp_path / "real-manifest")
    (path / MANIFEST_NAME).symlink_to(tmp_path / "real-manifest")
    with pytest.raises(PermissionError, match="refusing the dataset manifest"):
        asyncio.run(resumed(path).open())
    assert elsewhere.read_bytes() == b"keep"


def test_output_of_the_other_layout_is_refused_naming_the_layout(tmp_path: Path) -> None:
    # The upgrade path: a file written by the single-file layout is never overwritten.
    single = tmp_path / "old.parquet"
    asyncio.run(run(ParquetSink(single, layout="file"), [1]))
    before = single.read_bytes()
    for sink in (ParquetSink(single), resumed(single)):
        with pytest.raises(ValueError, match="is a single Parquet file .* pass layout='file'"):
            asyncio.run(sink.open())
    assert single.read_bytes() == before
    asyncio.run(run(resumed(single, layout="file"), [2]))  # that layout still continues it
    assert pq.read_table(single).column("n").to_pylist() == [1, 2]
    # Parts a crashed single-file run left must be merged by that layout first.
    crashed = tmp_path / "crashed.parquet"
    asyncio.run(run(ParquetSink(crashed, layout="file"), [1], close=False))
    with pytest.raises(ValueError, match="sealed and never merged .* resume that run with "
                                         "layout='file'"):
        asyncio.run(resumed(crashed).open())
    folder = tmp_path / "new.parquet"
    asyncio.run(run(ParquetSink(folder), [1]))
    with pytest.raises(ValueError, match="is a folder .* pass layout='dataset'"):
        asyncio.run(ParquetSink(folder, layout="file").open())


def test_bad_layout_or_missing_parent_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout must be 'dataset' .* or 'file'"):
        ParquetSink(tmp_path / "x", layout="folder")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="'pq' cannot create its output folder .*"
                                                "create the parent folder first"):
        asyncio.run(ParquetSink(tmp_path / "missing" / "x", name="pq").open())


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_false_skips_every_fsync_and_keeps_the_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path, fsync=fsync), [1], [2]))
    monkeypatch.undo()
    assert bool(calls) is fsync
    assert ids(path) == [1, 2]


def test_a_fresh_sink_whose_open_fails_leaves_the_earlier_dataset(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], [2]))
    (path / PARTIAL_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="refusing its temporary file"):
        asyncio.run(ParquetSink(path).open())
    assert ids(path) == [1, 2]  # the earlier parts are removed only once open() succeeds


def test_a_pending_part_replaced_after_the_crash_is_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1], [2], close=False))
    pending = path / manifest(path)["pending"]["name"]
    pending.unlink()
    pq.write_table(pa.table({"n": [666]}), pending)  # another file under the pending name
    with pytest.raises(ValueError, match=f"holds {pending.name}, which its manifest"):
        asyncio.run(resumed(path).open())


def test_temporary_manifests_of_a_killed_write_are_removed_only_if_ours(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    asyncio.run(run(ParquetSink(path), [1]))
    ours = path / f"{MANIFEST_NAME}.agora-tmp-abc"
    ours.write_bytes(b"{")
    link = path / f"{MANIFEST_NAME}.agora-tmp-link"
    link.symlink_to(tmp_path / "target")
    asyncio.run(run(resumed(path), [2]))
    assert not ours.exists() and link.is_symlink()
    assert ids(path) == [1, 2]
