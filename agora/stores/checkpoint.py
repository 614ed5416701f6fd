"""Checkpoint stores: the contract, key and value rules, and the synchronous in-memory store."""

from __future__ import annotations

import json
import math
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any

from agora.errors import CheckpointError
from agora.protocols import CheckpointStoreProtocol
from agora.records import Checkpoint, SourceIdentity

__all__ = [
    "CheckpointStore",
    "SyncInMemoryCheckpointStore",
    "check_key",
    "encode_checkpoint_value",
    "in_use_message",
]


class CheckpointStore(CheckpointStoreProtocol, ABC):
    """Where a run saves its source position, one checkpoint per key (the pipeline id).

    Contract (each method is a short local operation — a lookup, or one small durable
    commit). Methods are written synchronously here; a subclass may write ``open``,
    ``load``, ``save`` and ``close`` as coroutines (``async def``) instead, and
    ``DeliveryConfig(checkpoint=…)`` then awaits them to completion on a helper event loop
    while the run waits (see :class:`~agora.config.AsyncStoreAdapter`):

    * ``load(key)`` returns the last saved :class:`Checkpoint` or None if the key was never
      saved (or was reset). A checkpoint that exists but cannot be trusted raises
      :class:`~agora.errors.CheckpointError` — never None.
    * ``save(key, checkpoint)`` is durable when it returns: a crash (even SIGKILL) after
      it returns cannot lose it. It replaces the key's previous checkpoint atomically.
      ``checkpoint.value`` must be a JSON value; anything else raises ``CheckpointError``.
    * ``reset(key)`` deletes the key's checkpoint; True if there was one.
    * ``list_keys()`` returns the saved keys, sorted.
    * ``open()`` is optional (stores open on first use); ``close()`` is idempotent and only
      releases resources — the store reopens on next use, so one store object can serve
      several runs. Usable as a context manager.
    * ``claim(key)`` / ``release(key)`` fence runs: the runtime claims the key for the
      whole run, and a second run on the same key (in this or another process) is refused
      with ``CheckpointError`` instead of interleaving saves with the first. ``close()``
      releases every claim; a claim never outlives its process.

    Values come back as ``json.loads`` gives them: tuples become lists.
    """

    store_name: str = "checkpoint_store"

    def open(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Acquire resources now instead of on first use (surfaces errors early)."""

    @abstractmethod
    def load(self, key: str) -> Checkpoint | None: ...

    @abstractmethod
    def save(self, key: str, checkpoint: Checkpoint) -> None: ...

    @abstractmethod
    def reset(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release resources (and claims). Idempotent."""

    def claim(self, key: str) -> None:
        """Reserve ``key`` for one run; CheckpointError if another run holds it."""
        check_key(key)
        with _CLAIMS_LOCK:
            token = (self._claim_scope(), key)
            if token in _CLAIMS:
                raise CheckpointError(in_use_message(key, self, "another run in this process"))
            _CLAIMS.add(token)
        self._claims().add(key)

    def release(self, key: str) -> None:
        """Give up a claim taken by :meth:`claim`; releasing an unclaimed key does nothing."""
        if key in self._claims():
            self._claims().discard(key)
            with _CLAIMS_LOCK:
                _CLAIMS.discard((self._claim_scope(), key))

    def _claim_scope(self) -> object:
        """What two stores must share for their claims to collide (the store itself)."""
        return id(self)

    def _claims(self) -> set[str]:
        claims = self.__dict__.get("_held_claims")
        if claims is None:
            claims = self.__dict__["_held_claims"] = set()
        return claims

    def _release_all(self) -> None:
        for key in list(self._claims()):
            self.release(key)

    def __enter__(self) -> CheckpointStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid checkpoint key; else raise TypeError/ValueError."""
    if not isinstance(key, str):
        raise TypeError(f"checkpoint key must be a str; got {type(key).__name__}")
    if not key:
        raise ValueError("checkpoint key must be a non-empty string (default: the pipeline id)")
    return key


def _non_json(value: Any, where: str = "") -> tuple[str, str] | None:
    """``(what, where)`` for the first part of ``value`` that is not a JSON value, or None."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (f"the float {value!r}", where)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_json(item, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return (f"a dict key of type {type(k).__name__} ({k!r})", where)
            found = _non_json(item, f"{where}[{k!r}]")
            if found:
                return found
        return None
    return (_a(type(value).__qualname__), where)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def encode_checkpoint_value(checkpoint: Checkpoint) -> str:
    """The JSON text of ``checkpoint.value``; CheckpointError naming the source if it is
    not a JSON value (NaN/infinity and non-string dict keys included: they would not come
    back as they went in)."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"save() needs an agora.Checkpoint; got {type(checkpoint).__name__}")
    for name in ("pipeline_id", "run_id", "source", "recorded_at"):
        if not isinstance(getattr(checkpoint, name), str):
            raise TypeError(
                f"Checkpoint.{name} must be a str; got {type(getattr(checkpoint, name)).__name__}"
            )
    problem = _non_json(checkpoint.value)
    if problem is not None:
        what, where = problem
        if where or what.startswith("a dict key"):
            what = f"{_a(type(checkpoint.value).__qualname__)} containing {what}"
            what += f" at value{where}" if where else ""
        raise CheckpointError(
            f"current_checkpoint() of source {checkpoint.source!r} returned {what}; "
            f"checkpoints must be JSON values (dict with str keys, list, str, int, "
            f"finite float, bool or None)"
        )
    return json.dumps(checkpoint.value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class SyncInMemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict, for tests and throw-away runs (not durable across processes).

    Stores the JSON text, so a caller mutating a value after ``save`` (or the one returned
    by ``load``) never changes what is stored, and values behave exactly as with
    :class:`~agora.SyncSQLiteCheckpointStore`; ``source_identity`` is kept with it. ``close()`` keeps the data: a later run on
    the same object resumes. :class:`~agora.InMemoryCheckpointStore` is this store behind
    coroutine methods.
    """

    store_name = "memory_checkpoints"

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, str, str, str, str, SourceIdentity | None]] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> Checkpoint | None:
        with self._lock:
            row = self._rows.get(check_key(key))
        if row is None:
            return None
        pipeline_id, run_id, source, value, recorded_at, identity = row
        return Checkpoint(pipeline_id, run_id, source, json.loads(value), recorded_at,
                          source_identity=identity)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        check_key(key)
        value = encode_checkpoint_value(checkpoint)
        with self._lock:
            self._rows[key] = (
                checkpoint.pipeline_id,
                checkpoint.run_id,
                checkpoint.source,
                value,
                str(checkpoint.recorded_at),  # text after Checkpoint.__post_init__
                checkpoint.source_identity,  # a frozen value object: kept as it is
            )

    def reset(self, key: str) -> bool:
        with self._lock:
            return self._rows.pop(check_key(key), None) is not None

    def list_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._rows)

    def __repr__(self) -> str:
        return f"SyncInMemoryCheckpointStore(keys={len(self._rows)})"


#: Keys claimed by runs in this process, per store scope (cross-process fencing of the
#: SQLite store uses file locks on top of this).
_CLAIMS: set[tuple[object, str]] = set()
_CLAIMS_LOCK = threading.Lock()


def in_use_message(key: str, store: CheckpointStore, holder: str) -> str:
    """The message that refuses a second run on a claimed ``key``."""
    return (
        f"checkpoint {key!r} in {store!r} is in use by {holder}; runs of one pipeline must "
        f"not overlap (their checkpoints would interleave) — wait for it to finish, or give "
        f"this run another checkpoint_key"
    )
