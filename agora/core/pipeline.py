"""Import path kept for 0.3.0 programs: the pipeline builder."""

from __future__ import annotations

from agora.pipeline import BoundPipeline, Pipeline

__all__ = ["BoundPipeline", "Pipeline"]
