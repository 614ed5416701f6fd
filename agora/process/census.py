"""Imported last by the zygote: records which modules every worker inherits at fork.

A worker forked from the zygote inherits this module already imported, with the zygote's
pid and module list; a worker that imports it itself (its forkserver never preloaded
it) records its own pid instead. :func:`inherited` tells the two apart, so a test or a
curious user can check by behaviour — not by timing — that workers did not import
pyarrow again.
"""

from __future__ import annotations

import os
import sys

__all__ = ["IMPORTED_IN_PID", "PRELOADED_MODULES", "inherited"]

#: The pid of the process that imported this module.
IMPORTED_IN_PID = os.getpid()
#: The modules that process had imported by then.
PRELOADED_MODULES = frozenset(sys.modules)


def inherited(module: str) -> bool:
    """True when ``module`` was already imported by the process this one was forked
    from (the zygote), i.e. this process did not pay for importing it."""
    return IMPORTED_IN_PID != os.getpid() and module in PRELOADED_MODULES
