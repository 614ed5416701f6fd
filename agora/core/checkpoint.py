"""Import path kept for 0.3.0 plugins: checkpoints and checkpoint stores."""

from __future__ import annotations

from agora.records import Checkpoint
from agora.stores import CheckpointStore, InMemoryCheckpointStore, SQLiteCheckpointStore

__all__ = ["Checkpoint", "CheckpointStore", "InMemoryCheckpointStore", "SQLiteCheckpointStore"]
