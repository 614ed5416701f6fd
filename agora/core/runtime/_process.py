"""0.3.0's private process-runner path: ``ProcessBatchError`` is Agora's; the runner is not.

0.3.0 programs import ``ProcessBatchError`` from here; it is
:class:`agora.errors.ProcessBatchError` (also importable from ``agora`` and
``agora.middlewares.process``). 0.3.0's ``ProcessPoolRunner`` was a private helper of its
process middleware; Agora's pool is a different design (worker generations, shared-memory
transport, the executor seam), so the name exists only to say what to use instead.
"""

from __future__ import annotations

from typing import Any, NoReturn

from agora.errors import ProcessBatchError

__all__ = ["ProcessBatchError", "ProcessPoolRunner"]


class ProcessPoolRunner:
    """Not provided: constructing one raises ``NotImplementedError`` naming the
    replacements (``ProcessBatchMiddleware`` and its ``submit_batch``, ``agora.WorkerPool``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            "agora.core.runtime._process.ProcessPoolRunner was a private part of 0.3.0 and "
            "is not provided; run fn through ProcessBatchMiddleware(fn=…) (process_batch() or "
            "submit_batch() after on_start()), or share warm workers with agora.WorkerPool"
        )
