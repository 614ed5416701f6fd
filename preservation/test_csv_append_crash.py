"""Crash safety over a growing CSV: an ``ArrowCsvSource`` job is SIGKILLed at seeded points
while it reads a file, the file then grows (a daily export appending rows), and the job is
killed again while its resumes seek past what earlier runs read. Nothing may be lost, the
DLQ holds exactly the poison records, duplicates stay bounded, and the last checkpoint
seeks to the end of the grown file."""

from __future__ import annotations

from pathlib import Path

import pytest

from preservation.audit import check_bounce, dlq_id, dlq_records, sink_ids
from preservation.crashloop import CrashLoop, plan_crashes, prepare

N = 2000
BATCH = 25
CHECKPOINT_EVERY = 100
ROUNDS = 3
DUP_BOUND_PER_CRASH = CHECKPOINT_EVERY + BATCH


def grow(path: Path, first: int, last: int) -> None:
    """Append rows ``first``..``last - 1`` in the driver's input format."""
    with open(path, "a") as fh:
        fh.write("".join(f"{i},name-{i},{i * 7}\n" for i in range(first, last)))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [41, 42])
def test_sigkill_before_and_after_the_input_grows_loses_nothing(
    tmp_path: Path, seed: int, no_orphans: None
) -> None:
    spec = prepare(tmp_path, lane="arrow", n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=seed)
    loop = CrashLoop(tmp_path)
    first = loop.run(plan_crashes(seed, ROUNDS))
    crashes_before = loop.crashes
    assert first["last_checkpoint"]["seek"]["row"] + first["last_checkpoint"]["seek"][
        "malformed"] == N, loop.history()
    grow(tmp_path / "input.csv", N, 2 * N)
    final = loop.run(plan_crashes(seed + 100, ROUNDS))
    assert loop.crashes > crashes_before, "no crash after the input grew: vacuous"
    poison = set(spec["malformed"]) | set(spec["middleware_poison"]) | set(spec["sink_poison"])
    dlq = [dlq_id(r) for r in dlq_records(tmp_path / "dlq.db")]
    report = check_bounce(n=2 * N, crashes=loop.crashes, sink=sink_ids(tmp_path / "out.jsonl"),
                          dlq=dlq, poison=poison, dup_bound_per_crash=DUP_BOUND_PER_CRASH)
    assert report.sink_duplicates <= loop.crashes * DUP_BOUND_PER_CRASH, loop.history()
    size = (tmp_path / "input.csv").stat().st_size
    malformed = len(spec["malformed"])
    assert final["last_checkpoint"]["seek"] == {
        "byte": size, "line": 2 * N + 1, "row": 2 * N - malformed, "malformed": malformed,
    }, loop.history()
