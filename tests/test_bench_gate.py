"""The release gate's comparison tool passes its own self-test, which includes replaying
the recorded campaigns: every unchanged gate passes, every 25%-slowed gate fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_the_benchmark_gate_self_test_passes():
    done = subprocess.run([sys.executable, "bench/compare.py", "--self-test"], cwd=ROOT,
                          capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "check_recorded_campaign_by_runs" in done.stdout
    assert "FAIL" not in done.stdout
