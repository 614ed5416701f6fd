"""Whole pipelines on a really small tmpfs: batches bigger than all of shared memory still
arrive complete — no SIGBUS, no slot file left, no worker left.

Each run happens in a child interpreter, so a SIGBUS would show as its exit status instead
of killing the test session. Needs root (to mount a tmpfs); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

TMPFS_SIZE = "4m"  # the big batches below are 4-6 times this


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at a temp dir, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    target = tmp_path / "shm"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=1777", "tmpfs", str(target)],
        capture_output=True, text=True, timeout=10,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=10)


def run_script(code: str, tmp_path: Path, shm: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "AGORA_SHM_DIR": str(shm)}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env,
        cwd=os.getcwd(), timeout=100,
    )


UNRESERVED_WRITE = """
    import mmap, os, sys
    path = os.path.join(os.environ["AGORA_SHM_DIR"], "sparse")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 16 << 20)
    mm = mmap.mmap(fd, 16 << 20)
    os.unlink(path)
    mm[:] = b"x" * (16 << 20)   # more than the tmpfs holds, never reserved
    print("survived")
"""


def test_the_small_tmpfs_really_kills_an_unreserved_write_with_sigbus(small_tmpfs, tmp_path):
    """The fault the transport must avoid is real on this tmpfs (so the test below can
    tell a regression)."""
    done = run_script(UNRESERVED_WRITE, tmp_path, small_tmpfs)
    assert done.returncode == -signal.SIGBUS, (done.returncode, done.stdout, done.stderr)
    assert "survived" not in done.stdout


JOB = """
    import json, os, sys
    import pyarrow as pa
    from agora import (ArrowBatchSource, ArrowProcessBatchMiddleware, IterableBatchSource,
                       MemorySink, Pipeline, ProcessBatchMiddleware)
    from agora.testing import worker_processes
    from tests.process import faults

    LANE = {lane!r}
    SIZES = [1_000, {big}, 1_000, {big}, 500]   # rows per batch; {big} rows > the tmpfs

    def main():
        if LANE == "arrow":
            starts = [sum(SIZES[:i]) for i in range(len(SIZES))]
            batches = [pa.record_batch({{"id": pa.array(range(s, s + n), pa.int64()),
                                         "x": pa.array([1.5] * n, pa.float64())}})
                       for s, n in zip(starts, SIZES)]
            source = ArrowBatchSource(batches)
            mw = ArrowProcessBatchMiddleware(faults.arrow_add_doubled, max_workers=2,
                                             name="proc")
        else:
            batches, next_id = [], 0
            for n in SIZES:
                batches.append([{{"id": next_id + i, "value": i % 7}} for i in range(n)])
                next_id += n
            source = IterableBatchSource(batches)
            mw = ProcessBatchMiddleware(faults.double_values, max_workers=2, name="proc")
        sink = MemorySink()
        summary = Pipeline(source, id="small-shm").pipe(mw).build(sink).run_sync()
        ids = [r["id"] for r in sink.records]
        if LANE == "arrow":
            ok = all(r["doubled"] == 3.0 for r in sink.records)
        else:
            expected = [2 * (i % 7) for n in SIZES for i in range(n)]
            ok = [r["value"] for r in sink.records] == expected
        metrics = summary.runtime["process_batch"]["proc"]
        print(json.dumps({{
            "ids_in_order": ids == list(range(sum(SIZES))),
            "rows": len(ids),
            "values_ok": ok,
            "written": summary.records_written,
            "fallbacks_in": metrics["shm_fallbacks_in"],
            "fallbacks_out": metrics["shm_fallbacks_out"],
            "left": sorted(os.listdir(os.environ["AGORA_SHM_DIR"])),
            "workers_left": [p.pid for p in worker_processes()],
        }}))

    if __name__ == "__main__":
        main()
"""


@pytest.mark.parametrize("lane, big", [("arrow", 1_000_000), ("rows", 400_000)])
def test_a_pipeline_with_batches_bigger_than_shared_memory_delivers_every_row(
    no_orphans, small_tmpfs, tmp_path, lane, big
):
    done = run_script(JOB.format(lane=lane, big=big), tmp_path, small_tmpfs)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    total = 2_500 + 2 * big
    assert report["rows"] == total and report["written"] == total
    assert report["ids_in_order"] and report["values_ok"]
    # The two big batches (and their results) took the pipe; the small ones used slots.
    assert report["fallbacks_in"] == 2
    assert report["fallbacks_out"] == 2
    assert report["left"] == []  # no slot file left in the small tmpfs
    assert report["workers_left"] == []  # the job's pool left no worker behind
    assert "--shm-size" in done.stderr  # the operator was told once, with the fix
    assert list(small_tmpfs.iterdir()) == []
