"""0.3.0's private buffered-lane names (see ``agora.core.runtime``): importable only."""

from __future__ import annotations

from typing import Any

# Agora has no native-code (Rust) record buffers; the flag says so, and the buffer name
# exists only so code that patches it still runs. Agora never reads either.
_RUST_AVAILABLE = False
LinearBatchBuffer: Any = None
