"""Run a command as a child subreaper and report the processes it left behind.

``python -m tests.process.reaper REPORT.json -- CMD ...`` runs ``CMD`` with this process's
stdin/stdout/stderr, waits for it, then gives its orphans (workers of a crashed driver,
which the kernel reparents to us because we are a subreaper) a few seconds to exit.
``REPORT.json`` receives ``{"returncode": …, "left": ["pid cmdline", …]}``; anything
still alive is killed, so nothing outlives the test that used it.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 5.0


def main(argv: list[str]) -> int:
    report, sep, *command = argv
    if sep != "--" or not command:
        raise SystemExit("usage: python -m tests.process.reaper REPORT.json -- CMD ...")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
    returncode = subprocess.run(command, check=False, timeout=90).returncode
    me = psutil.Process()
    deadline = time.monotonic() + GRACE_S
    living: list[psutil.Process] = []
    while True:
        living = []
        for child in me.children(recursive=True):
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    child.wait(0)  # reap what was reparented to us
                else:
                    living.append(child)
            except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                continue
        if not living or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    left = []
    for proc in living:
        try:
            left.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    with open(report, "w", encoding="utf-8") as out:
        json.dump({"returncode": returncode, "left": left}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
