"""Import path kept for 0.3.0 plugins: the data planes and plane declarations."""

from __future__ import annotations

from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec, SourceDataPlaneSpec

__all__ = ["DataPlane", "SinkCapabilities", "SinkDataPlaneSpec", "SourceDataPlaneSpec"]
