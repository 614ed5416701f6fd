"""0.3.0's private batch-codec path: the names exist, the codecs are not provided.

0.3.0 moved batches to its workers through codec objects (pickled lists, Arrow IPC bytes).
Agora's transport is its own (pickled rows; Arrow through shared memory, never bytes
copied twice) and is not pluggable, so these names only say what to use instead.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["ArrowBatchCodec", "BatchCodecError", "PythonObjectCodec"]


class BatchCodecError(RuntimeError):
    """Kept so ``except BatchCodecError`` in 0.3.0 code still compiles; Agora never raises
    it (a batch or result of the wrong shape fails as ``ProcessBatchError``)."""


def _refuse(name: str) -> NoReturn:
    raise NotImplementedError(
        f"agora.core.runtime._process_codec.{name} was a private part of 0.3.0 and is not "
        "provided; ProcessBatchMiddleware and ArrowProcessBatchMiddleware move batches to "
        "their workers themselves — pass records or a pyarrow.RecordBatch to them directly"
    )


class PythonObjectCodec:
    """Not provided: constructing one raises ``NotImplementedError``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("PythonObjectCodec")


class ArrowBatchCodec:
    """Not provided: constructing one raises ``NotImplementedError``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("ArrowBatchCodec")
