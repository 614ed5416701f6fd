"""0.3.0's private source-adapter names (see ``agora.core.runtime``): importable only."""

from __future__ import annotations

from typing import Any

from agora.core.runtime import PrivateInternal

# Agora reads sources without native-code (Rust) prefetch buffers; the flag says so and
# the buffer name exists only so code that patches it still runs. Agora never reads them.
_RUST_AVAILABLE = False
RecordBuffer: Any = None


class SourceRuntimeAdapter(PrivateInternal):
    """0.3.0's private source reader; refuses construction."""

    instead = "run the source through a Pipeline; Agora reads it inside BoundPipeline.run()"
