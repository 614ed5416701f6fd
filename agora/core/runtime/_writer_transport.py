"""0.3.0's private writer-transport name (see ``agora.core.runtime``): importable only."""

from __future__ import annotations

from agora.core.runtime import PrivateInternal


class WriterTransport(PrivateInternal):
    """0.3.0's private writer wrapper; refuses construction."""

    instead = "pass the sink to Pipeline.build(); Agora's writer drives it"
