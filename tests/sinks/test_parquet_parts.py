"""ParquetSink's part files in a shared folder: only parts the sink recorded sealing are
adopted; planted, stray, altered or linked files are never merged or written through."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora.sinks._parquet_parts import PartLedger
from agora.sinks.parquet import ParquetSink as AnyLayoutParquetSink

# These tests pin the single-file layout (``layout="file"``); the dataset layout has its
# own in test_parquet_dataset.py.
ParquetSink = functools.partial(AnyLayoutParquetSink, layout="file")

NOBODY = 65534


def give_away(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user (uid 65534)")
    os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.agora-parts.json")


def part(path: Path, index: int) -> Path:
    return path.with_name(f".{path.name}.agora-part-{index:06d}")


def crashed_run(path: Path, *batches: list[int]) -> None:
    """A run that flushed each batch (one sealed part each) and died before close()."""

    async def main() -> None:
        sink = ParquetSink(path)
        await sink.open()
        for values in batches:
            await sink.write_arrow_batch(pa.record_batch({"n": values}))
            await sink.flush()
        sink._discard_partial()  # what dying leaves: sealed parts, no close()

    asyncio.run(main())


def resume(path: Path, *values: int) -> ParquetSink:
    sink = ParquetSink(path)
    sink.resume_output()

    async def main() -> None:
        await sink.open()
        if values:
            await sink.write_arrow_batch(pa.record_batch({"n": list(values)}))
        await sink.close()

    asyncio.run(main())
    return sink


def numbers(path: Path) -> list[int]:
    return pq.read_table(path).column("n").to_pylist()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_bytes(b"precious data owned by the user running the test\n")
    return path


@pytest.fixture
def planted_parquet(tmp_path: Path) -> Path:
    """A valid Parquet file with rows nobody wrote through the sink."""
    path = tmp_path / "planted.parquet"
    pq.write_table(pa.table({"n": [666, 667]}), path)
    return path


def test_manifest_records_each_sealed_part_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2], [3])
    manifest = json.loads(manifest_of(path).read_bytes())
    assert [p["name"] for p in manifest["parts"]] == [part(path, 0).name, part(path, 1).name]
    for entry in manifest["parts"]:
        file = tmp_path / entry["name"]
        assert entry["size"] == file.stat().st_size and entry["sha256"] == digest(file)
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(manifest_of(path).stat().st_mode) == 0o600
    assert manifest["merged"] is None


def test_planted_part_is_not_adopted_and_is_left_in_place(
    tmp_path: Path, planted_parquet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2])
    stray = part(path, 1)  # the very name the next part would get
    os.replace(planted_parquet, stray)
    before = digest(stray)
    with caplog.at_level(logging.WARNING, logger="agora.sinks"):
        resume(path, 3)
    assert numbers(path) == [1, 2, 3]  # 666/667 never merged
    assert digest(stray) == before  # left in place, untouched
    assert f"ignoring {stray}" in caplog.text and "left in place" in caplog.text
    assert not manifest_of(path).exists() and not part(path, 0).exists()


def test_planted_part_is_not_adopted_by_a_fresh_sink_either(
    tmp_path: Path, planted_parquet: Path
) -> None:
    path = tmp_path / "out.parquet"
    os.replace(planted_parquet, part(path, 0))

    async def main() -> None:
        sink = ParquetSink(path)
        await sink.open()
        await sink.write_arrow_batch(pa.record_batch({"n": [1]}))
        await sink.flush()  # seals under the next free name, never over the stray
        await sink.close()

    asyncio.run(main())
    assert numbers(path) == [1]
    assert pq.read_table(part(path, 0)).column("n").to_pylist() == [666, 667]


def test_altered_listed_part_fails_the_resume_and_output_is_unchanged(
    tmp_path: Path, planted_parquet: Path
) -> None:
    path = tmp_path / "out.parquet"
    pq.write_table(pa.table({"n": [0]}), path)  # the output of an earlier run
    before = digest(path)
    crashed_run(path, [1, 2])
    os.replace(planted_parquet, part(path, 0))  # swapped for other rows
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(ValueError, match=r"is not the file this sink sealed .*reset the run"):
        asyncio.run(sink.open())
    assert digest(path) == before


def test_missing_listed_part_fails_the_resume(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2], [3])
    part(path, 1).unlink()
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(ValueError, match=rf"part {part(path, 1)} listed in .* is missing"):
        asyncio.run(sink.open())
    assert not path.exists()


def test_listed_part_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2])
    real = tmp_path / "moved-away"
    os.replace(part(path, 0), real)
    part(path, 0).symlink_to(real)  # same bytes, but through a link
    before = digest(real)
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(PermissionError, match=r"refusing the part file: .* is a symbolic link"):
        asyncio.run(sink.open())
    assert digest(real) == before


def test_damaged_manifest_fails_the_resume(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1])
    manifest_of(path).write_bytes(b'{"version": 1, "parts": [')
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(ValueError, match="parts manifest .* is damaged"):
        asyncio.run(sink.open())


def test_manifest_naming_a_file_outside_the_parts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1])
    data = json.loads(manifest_of(path).read_bytes())
    data["parts"][0]["name"] = "../../etc/passwd"
    manifest_of(path).write_text(json.dumps(data))
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(ValueError, match="unexpected file name '../../etc/passwd'"):
        asyncio.run(sink.open())


@pytest.mark.parametrize("name", ["manifest", "partial"])
def test_planted_link_at_the_manifest_or_partial_is_refused(
    tmp_path: Path, victim: Path, name: str
) -> None:
    path = tmp_path / "out.parquet"
    sink = ParquetSink(path, name="pq")
    target = manifest_of(path) if name == "manifest" else sink.partial_path
    target.symlink_to(victim)
    before = digest(victim)
    with pytest.raises(PermissionError, match=rf"sink 'pq': refusing .*{target} is a symbolic"):
        asyncio.run(sink.open())
    asyncio.run(sink.close())
    assert digest(victim) == before and target.is_symlink()  # not removed, not written


def test_link_planted_at_the_manifest_after_open_is_replaced_not_written_through(
    tmp_path: Path, victim: Path
) -> None:
    path = tmp_path / "out.parquet"
    before = digest(victim)

    async def main() -> None:
        sink = ParquetSink(path)
        await sink.open()
        manifest_of(path).symlink_to(victim)  # planted mid-run
        await sink.write_arrow_batch(pa.record_batch({"n": [1]}))
        await sink.flush()
        assert not manifest_of(path).is_symlink()  # atomically replaced by the real one
        await sink.close()

    asyncio.run(main())
    assert digest(victim) == before and numbers(path) == [1]


def test_link_planted_at_the_next_part_name_is_skipped(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "out.parquet"
    before = digest(victim)

    async def main() -> None:
        sink = ParquetSink(path)
        await sink.open()
        part(path, 0).symlink_to(victim)
        await sink.write_arrow_batch(pa.record_batch({"n": [1]}))
        await sink.flush()
        await sink.close()

    asyncio.run(main())
    assert digest(victim) == before and part(path, 0).is_symlink() and numbers(path) == [1]


@pytest.mark.parametrize("name", ["manifest", "partial"])
def test_another_users_manifest_or_partial_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "out.parquet"
    sink = ParquetSink(path, name="pq")
    target = manifest_of(path) if name == "manifest" else sink.partial_path
    target.write_bytes(b"{}")
    give_away(target)
    with pytest.raises(PermissionError, match=rf"{target} is owned by uid {NOBODY}"):
        asyncio.run(sink.open())
    assert target.read_bytes() == b"{}"


def test_killed_after_the_merged_output_was_renamed_merges_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2], [3])
    monkeypatch.setattr(PartLedger, "finish", lambda self: None)  # "killed" before cleanup
    resume(path, 4)
    assert numbers(path) == [1, 2, 3, 4]
    assert part(path, 0).exists() and json.loads(manifest_of(path).read_bytes())["merged"]
    monkeypatch.undo()
    resume(path, 5)
    assert numbers(path) == [1, 2, 3, 4, 5]  # the parts were recognised as merged
    assert not list(tmp_path.glob(".out.parquet.agora-*"))


def test_killed_before_the_merged_output_was_renamed_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2])
    real_replace = os.replace

    def fail_onto_output(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_onto_output)
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(OSError, match="Input/output error"):
        asyncio.run(_write_and_close(sink, 3))
    monkeypatch.undo()
    assert not path.exists()
    assert json.loads(manifest_of(path).read_bytes())["merged"] is not None
    resume(path, 4)  # the "merged" record does not match path: the parts are adopted
    assert numbers(path) == [1, 2, 3, 4]


async def _write_and_close(sink: ParquetSink, value: int) -> None:
    await sink.open()
    await sink.write_arrow_batch(pa.record_batch({"n": [value]}))
    await sink.close()


def test_listed_part_altered_in_place_with_the_same_size_fails_the_resume(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1, 2, 3])
    target = part(path, 0)
    size = target.stat().st_size
    with open(target, "r+b") as fh:  # same size, one byte of the data pages changed
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert target.stat().st_size == size
    sink = ParquetSink(path)
    sink.resume_output()
    with pytest.raises(ValueError, match="size or SHA-256 differs"):
        asyncio.run(sink.open())
    assert not path.exists()


def test_failed_manifest_write_fails_the_flush_and_the_part_is_not_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.parquet"
    real_replace = os.replace

    def no_space_for_the_manifest(src: Any, dst: Any) -> None:
        if Path(dst) == manifest_of(path):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    async def main() -> None:
        sink = ParquetSink(path)
        await sink.open()
        await sink.write_arrow_batch(pa.record_batch({"n": [1]}))
        monkeypatch.setattr(os, "replace", no_space_for_the_manifest)
        with pytest.raises(OSError, match="No space"):
            await sink.flush()  # not durable: the checkpoint must not pass these rows
        monkeypatch.undo()
        sink._discard_partial()  # the run stops here

    asyncio.run(main())
    assert not list(tmp_path.glob(".out.parquet.agora-parts.json.agora-tmp-*"))
    with caplog.at_level(logging.WARNING, logger="agora.sinks"):
        resume(path, 2)  # the resumed run re-emits row 1 from its checkpoint
    assert numbers(path) == [2] and "ignoring" in caplog.text


def test_partial_created_by_someone_else_mid_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ParquetSink(tmp_path / "out.parquet", name="pq")
    real_open = os.open

    def plant_first(path: Any, flags: int, mode: int = 0o777) -> int:
        if Path(path) == sink.partial_path and flags & os.O_EXCL:
            sink.partial_path.write_bytes(b"planted")  # wins the race for the name
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", plant_first)
    with pytest.raises(PermissionError, match="'pq': its temporary file .* by someone else"):
        asyncio.run(sink.open())
    monkeypatch.undo()
    assert sink.partial_path.read_bytes() == b"planted"


def test_partial_name_the_os_refuses_is_a_clear_error(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / ("p" * 250 + ".parquet"), name="pq")
    with pytest.raises(OSError, match=r"sink 'pq' cannot use its part files .*name too long"):
        asyncio.run(sink.open())


def test_temporary_file_name_the_os_refuses_is_a_clear_error(tmp_path: Path) -> None:
    from agora.sinks._files import create_private_file

    with pytest.raises(OSError, match=r"sink 'pq' cannot create .*File name too long"):
        create_private_file("pq", tmp_path / ("t" * 300))


def test_temporary_manifest_left_by_a_killed_write_is_cleaned_only_if_ours(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.parquet"
    crashed_run(path, [1])
    ours = manifest_of(path).with_name(f"{manifest_of(path).name}.agora-tmp-abc")
    ours.write_bytes(b"{half")
    theirs = manifest_of(path).with_name(f"{manifest_of(path).name}.agora-tmp-xyz")
    theirs.write_bytes(b"{other")
    try:
        give_away(theirs)
    except pytest.skip.Exception:
        theirs.unlink()
    resume(path, 2)
    assert numbers(path) == [1, 2] and not ours.exists()
    if theirs.exists():
        assert theirs.read_bytes() == b"{other"  # another user's file is not ours to delete
