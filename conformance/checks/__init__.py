"""The conformance checks. Importing this package registers every check in the catalogue.

Each check is a public function taking a ``SinkContext`` / ``SourceContext`` and raising
``AssertionError`` with a precise message on failure; pytest only drives them.
"""

from __future__ import annotations

from conformance.checks import (  # noqa: F401 - imported to register the checks
    sink_decl,
    sink_delivery,
    sink_dlq,
    sink_life,
    sink_pbt,
    sink_plane,
    sink_write,
    source_ckpt,
    source_decl,
    source_life,
    source_pbt,
    source_runtime,
)
from conformance.checks._context import SinkContext, SourceContext

__all__ = ["SinkContext", "SourceContext"]
