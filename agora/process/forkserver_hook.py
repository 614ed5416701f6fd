"""Preloaded by the forkserver: route start-up tracebacks of Agora workers to reports.

Importing this module installs :func:`agora.process.startup.capture_excepthook` — but
only when the forkserver itself is importing it (its preload step); imported anywhere
else it does nothing, so the driver's own excepthook is never touched.
"""

from __future__ import annotations

import os
import sys

from agora.process.startup import capture_excepthook

__all__: list[str] = []


def _preloaded_by_forkserver() -> bool:
    frame = sys._getframe(1)
    suffix = os.path.join("multiprocessing", "forkserver.py")
    while frame is not None:
        code = frame.f_code
        if code.co_name == "main" and code.co_filename.endswith(suffix):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


if _preloaded_by_forkserver():
    sys.excepthook = capture_excepthook(sys.excepthook)
