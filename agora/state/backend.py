"""Import path kept for 0.3.0 programs: the in-memory key/value backend."""

from __future__ import annotations

from agora.stores.checkpoint_backend import KeyValueBackend, MemoryBackend

__all__ = ["KeyValueBackend", "MemoryBackend"]
