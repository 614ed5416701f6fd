"""Import path kept for 0.3.0 plugins: the context every middleware call receives.

0.3.0 called it ``PipelineContext``; here it is :class:`agora.middleware.MiddlewareContext`
(pipeline id, run id, the middleware's name and its counters)."""

from __future__ import annotations

from agora.middleware import MiddlewareContext

PipelineContext = MiddlewareContext

__all__ = ["MiddlewareContext", "PipelineContext"]
