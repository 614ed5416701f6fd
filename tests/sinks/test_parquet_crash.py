"""ParquetSink under SIGKILL at seeded points of a real pipeline run (mid write, mid flush,
mid close) and inside a close() that seals a last part: after every kill the dataset
reads cleanly, and the resumed runs lose no row and repeat at most the rows since the
last checkpoint."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from agora.sinks._parquet_dataset import MANIFEST_NAME, PARTIAL_NAME
from agora.sinks.parquet import ParquetSink

ROWS = 1_200
CHECKPOINT_EVERY = 100
ROOT = Path(__file__).resolve().parents[2]

# The child runs the job; with a kill point it SIGKILLs itself at the N-th call of one of
# the operations a flush or close is made of, so the kill lands inside them.
_CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
from agora import DeliveryConfig, IterableSource, ParquetSink, Pipeline, SyncSQLiteCheckpointStore
from agora.sinks import _parquet_dataset, _parquet_parts

hook, at = {hook!r}, {at!r}
armed = not hook.startswith("close:")  # "close:X": count X only once close() has begun
hook = hook.split(":")[-1]
calls = 0

def killing(real):
    def wrapper(*args, **kwargs):
        global calls
        calls += armed
        if armed and calls == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper

if not armed:
    real_close = ParquetSink.close
    async def arming_close(self):
        global armed
        armed = True
        return await real_close(self)
    ParquetSink.close = arming_close
if hook == "write":      # bytes of a part being written
    _parquet_parts.HashingWriter.write = killing(_parquet_parts.HashingWriter.write)
elif hook in ("manifest", "commit"):  # the manifest being replaced; the final commit
    name = "_replace" if hook == "manifest" else "commit"
    setattr(_parquet_dataset.DatasetLedger, name,
            killing(getattr(_parquet_dataset.DatasetLedger, name)))
elif hook:               # os.fsync or os.replace: inside a seal
    setattr(os, hook, killing(getattr(os, hook)))

rows = [{{"n": i}} for i in range({rows})]
Pipeline(IterableSource(rows), id="crash").build(
    ParquetSink({out!r}, row_group_size=64),
    delivery=DeliveryConfig(checkpoint=SyncSQLiteCheckpointStore({db!r}),
                            checkpoint_every={every}),
).run_sync()
"""


def run_job(tmp_path: Path, hook: str = "", at: int = 0) -> int:
    script = _CHILD.format(root=str(ROOT), hook=hook, at=at, rows=ROWS,
                           out=str(tmp_path / "out.parquet"), db=str(tmp_path / "ckpt.db"),
                           every=CHECKPOINT_EVERY)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def read_ids(out: Path) -> list[int]:
    """What a dataset reader sees; it must never fail on a partial file."""
    if not out.exists():
        return []
    table = ds.dataset(out, format="parquet").to_table()
    if "n" not in table.schema.names:  # killed before the first part was sealed
        assert table.num_rows == 0
        return []
    return [int(v) for v in table.column("n").to_pylist()]


def kill_points(seed: int) -> list[tuple[str, int]]:
    # Upper bounds keep every point inside one run of ~12 flushes: a seal makes about
    # three fsyncs, two renames and one manifest write; a part takes a handful of writes.
    rng = random.Random(seed)
    reach = {"write": 60, "fsync": 36, "replace": 24, "manifest": 12}
    return [(hook, rng.randint(1, reach[hook]))
            for hook in (rng.choice(sorted(reach)) for _ in range(2))]


# Kills inside close(). The runtime flushes at the end of the stream (its last
# checkpoint), so close() has no part left to seal here: what it does is commit the
# manifest — killed before it, at its fsync, and at its rename.
IN_CLOSE = [[("close:commit", 1)], [("close:fsync", 1)], [("close:replace", 1)]]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("points", [kill_points(seed) for seed in range(6)] + IN_CLOSE,
                         ids=[f"seed{seed}" for seed in range(6)]
                         + [p[0][0] + str(p[0][1]) for p in IN_CLOSE])
def test_sigkill_mid_flush_or_close_loses_nothing_and_shows_no_partial_file(
        tmp_path: Path, points: list[tuple[str, int]], no_orphans: None) -> None:
    out = tmp_path / "out.parquet"
    kills = 0
    for hook, at in points:
        if run_job(tmp_path, hook, at) == -signal.SIGKILL:
            kills += 1
        seen = read_ids(out)  # readable after each kill: only complete files are visible
        assert set(seen) <= set(range(ROWS))
        assert not [p for p in out.glob("*") if p.name.endswith(".agora-partial")
                    and not p.name.startswith(".")]
    assert run_job(tmp_path) == 0  # the resume that finishes the job
    assert kills, f"{points}: no kill point was reached; the test proved nothing"
    seen = read_ids(out)
    assert set(seen) == set(range(ROWS)), f"lost: {sorted(set(range(ROWS)) - set(seen))[:10]}"
    repeated = sum(c - 1 for c in Counter(seen).values())
    # Each kill may repeat the rows since the last checkpoint (and a unit in flight).
    assert repeated <= kills * (CHECKPOINT_EVERY + 1), (points, repeated)
    assert not (out / PARTIAL_NAME).exists()
    recorded = json.loads((out / MANIFEST_NAME).read_text())
    assert recorded["pending"] is None
    assert sorted(p["name"] for p in recorded["parts"]) == sorted(
        p.name for p in out.glob("part-*.parquet"))


# The sink alone, killed inside close() while it seals the rows written since the last
# flush: at the N-th fsync or rename of close().
_DIRECT = """
import asyncio, os, signal, sys
sys.path.insert(0, {root!r})
import pyarrow as pa
from agora.sinks.parquet import ParquetSink

hook, at = {hook!r}, {at!r}
calls = 0
real = getattr(os, hook)

def killing(*args, **kwargs):
    global calls
    calls += 1
    if calls == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

async def main():
    sink = ParquetSink({out!r})
    await sink.open()
    await sink.write_arrow_batch(pa.record_batch({{"n": [1, 2]}}))
    await sink.flush()                                   # durable before the kill
    await sink.write_arrow_batch(pa.record_batch({{"n": [3]}}))  # sealed by close()
    setattr(os, hook, killing)
    await sink.close()

asyncio.run(main())
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("hook", "at"), [("fsync", 1), ("fsync", 2), ("fsync", 3),
                                          ("replace", 1), ("replace", 2), ("replace", 3)])
def test_sigkill_inside_close_keeps_every_flushed_row_and_a_readable_folder(
        tmp_path: Path, hook: str, at: int) -> None:
    out = tmp_path / "out.parquet"
    script = _DIRECT.format(root=str(ROOT), hook=hook, at=at, out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # the kill point was reached
    seen = read_ids(out)
    # Flushed rows are always there; the closing part is there whole, or not at all.
    assert seen in ([1, 2], [1, 2, 3]), seen
    async def resume() -> None:
        sink = ParquetSink(out)
        sink.resume_output()
        await sink.open()
        await sink.close()

    asyncio.run(resume())
    assert read_ids(out) == seen  # the resume keeps exactly what a reader saw
    assert json.loads((out / MANIFEST_NAME).read_text())["pending"] is None
