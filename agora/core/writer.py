"""Import path kept for 0.3.0 plugins: the per-record outcome a sink may return."""

from __future__ import annotations

from agora.records import WriteResult

__all__ = ["WriteResult"]
