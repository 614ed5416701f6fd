"""0.3.0's private runtime module names, kept importable and nothing more.

Programs and test suites written for 0.3.0 sometimes import (or patch) names from its
private ``agora.core.runtime._*`` modules. Agora's engine is built differently
(``agora.runtime``), so those names cannot drive it: the modules here exist so that such
code still *imports*; every class in them refuses to be constructed with an error that
says what to use instead, and the flags they carry describe Agora truthfully (it has no
native-code buffers). Nothing in Agora reads them.
"""

from __future__ import annotations

from typing import Any, NoReturn

from agora.errors import AgoraError

__all__ = ["refuse_private_internal"]


def refuse_private_internal(name: str, instead: str) -> NoReturn:
    """Raise the error every 0.3.0 private runtime class raises when constructed."""
    raise AgoraError(
        f"{name} is a private part of the 0.3.0 runtime and does not exist in Agora, whose "
        f"engine is built differently; got a call to construct it — {instead}")


class PrivateInternal:
    """Base of the placeholders: importable, never constructible."""

    instead = "build a Pipeline and call run(); read the outcome from the run summary"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs
        refuse_private_internal(f"agora.core.runtime.{type(self).__name__}", self.instead)
