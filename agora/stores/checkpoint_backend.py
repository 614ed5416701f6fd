"""A checkpoint store over a key/value backend, and the in-memory backend."""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol, runtime_checkable

from agora.errors import CheckpointError
from agora.records import Checkpoint
from agora.stores.checkpoint import CheckpointStore, check_key, encode_checkpoint_value
from agora.stores.checkpoint_async import AsyncCheckpointStore
from agora.stores.checkpoint_legacy import identity_from_stored

__all__ = [
    "BackendCheckpointStore",
    "CheckpointPayloadError",
    "KeyValueBackend",
    "KeyValueCheckpointStore",
    "MemoryBackend",
]

#: The fields every stored checkpoint payload must have (``recorded_at`` is optional).
REQUIRED_FIELDS: tuple[str, ...] = ("pipeline_id", "run_id", "source", "value")


class CheckpointPayloadError(CheckpointError, TypeError):
    """A stored checkpoint payload does not have the shape of a checkpoint.

    A :class:`~agora.errors.CheckpointError` (Agora never starts over silently from a
    checkpoint it cannot trust) and a ``TypeError`` (what 0.3.0 raised here)."""


@runtime_checkable
class KeyValueBackend(Protocol):
    """What :class:`KeyValueCheckpointStore` needs from a backend: ``get`` (None when the
    key is absent), ``set``, ``delete`` (True if the key existed) and ``keys``."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> bool: ...

    def keys(self) -> list[str]: ...


class MemoryBackend:
    """A key/value backend in a dict (not durable; for tests and throw-away runs)."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            return self._items.get(key)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._items.pop(key, None) is not None

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._items)


class KeyValueCheckpointStore(CheckpointStore):
    """Checkpoints as dicts under ``"<namespace>:<key>"`` in a key/value backend.

    Durable exactly as far as the backend is. ``source_identity`` is stored as
    ``SourceIdentity.to_dict()`` (0.3.0's form is read too). ``load`` refuses a payload that is not a
    dict, or lacks one of ``pipeline_id``, ``run_id``, ``source``, ``value``, with
    :class:`CheckpointPayloadError` naming the backend key — never a silent fresh start.
    """

    store_name = "key_value_checkpoints"

    def __init__(self, backend: KeyValueBackend, *, namespace: str = "checkpoint") -> None:
        if not isinstance(backend, KeyValueBackend):
            raise TypeError(
                f"KeyValueCheckpointStore needs a backend with get, set, delete and keys "
                f"(e.g. MemoryBackend()); got {type(backend).__name__}")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty string; got {namespace!r}")
        self.backend = backend
        self.namespace = namespace

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{check_key(key)}"

    def load(self, key: str) -> Checkpoint | None:
        where = self._key(key)
        payload = self.backend.get(where)
        if payload is None:
            return None
        if not isinstance(payload, dict):
            raise CheckpointPayloadError(
                f"checkpoint payload at {where!r} in {type(self.backend).__name__}: expected "
                f"dict with {', '.join(REQUIRED_FIELDS)}; got {type(payload).__name__} — "
                f"delete the key (the next run starts from the beginning) or restore it")
        missing = [name for name in REQUIRED_FIELDS if name not in payload]
        if missing:
            raise CheckpointPayloadError(
                f"checkpoint payload at {where!r} in {type(self.backend).__name__} is "
                f"missing required fields {missing} — delete the key (the next run starts "
                f"from the beginning) or restore it")
        try:
            identity = identity_from_stored(payload.get("source_identity"))
        except ValueError as exc:
            raise CheckpointPayloadError(
                f"checkpoint payload at {where!r} in {type(self.backend).__name__} has a "
                f"source_identity that cannot be read ({exc}) — delete the key (the next run "
                f"starts from the beginning) or restore it") from exc
        recorded_at = payload.get("recorded_at")
        checkpoint = Checkpoint(str(payload["pipeline_id"]), str(payload["run_id"]),
                                str(payload["source"]), payload["value"],
                                source_identity=identity)
        if isinstance(recorded_at, str):
            checkpoint = Checkpoint(checkpoint.pipeline_id, checkpoint.run_id,
                                    checkpoint.source, checkpoint.value, recorded_at,
                                    source_identity=identity)
        return checkpoint

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        where = self._key(key)
        # Encoding first rejects a non-JSON value (CheckpointError) before anything is
        # stored, and the stored copy cannot change if the caller mutates the value later.
        value = json.loads(encode_checkpoint_value(checkpoint))
        self.backend.set(where, {
            "pipeline_id": checkpoint.pipeline_id,
            "run_id": checkpoint.run_id,
            "source": checkpoint.source,
            "value": value,
            "recorded_at": str(checkpoint.recorded_at),
            "source_identity": (None if checkpoint.source_identity is None
                                else checkpoint.source_identity.to_dict()),
        })

    def reset(self, key: str) -> bool:
        return self.backend.delete(self._key(key))

    def list_keys(self) -> list[str]:
        prefix = f"{self.namespace}:"
        return sorted(k[len(prefix):] for k in self.backend.keys() if k.startswith(prefix))

    def __repr__(self) -> str:
        return f"KeyValueCheckpointStore({type(self.backend).__name__}, {self.namespace!r})"


class BackendCheckpointStore(AsyncCheckpointStore):
    """:class:`KeyValueCheckpointStore` with coroutine methods (0.3.0's spelling:
    ``BackendCheckpointStore(backend, namespace="checkpoint")``)."""

    def __init__(self, backend: KeyValueBackend, namespace: str = "checkpoint") -> None:
        super().__init__(KeyValueCheckpointStore(backend, namespace=namespace))
