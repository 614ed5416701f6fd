"""Harnesses: how the suite builds a fresh component for a private namespace and, for sinks,
how it reads back what was persisted without using the sink's own code."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.data import BASIC_FEATURES, canonical_row

__all__ = [
    "DLQSinkHarness",
    "Namespace",
    "SinkHarness",
    "SourceHarness",
    "call_factory",
    "factory_arity",
]


@dataclass
class Namespace:
    """A fresh, private place for the components of one check.

    ``path`` is an empty directory owned by the check; ``state`` is harness scratch space
    (kept picklable: the subprocess resume check sends the namespace to a child process);
    ``components`` lists what the suite built here (not pickled).

    When a check knows the Arrow schema of everything it will write (generated data), it
    puts it in ``state["schema"]`` before building: a harness for a medium whose schema is
    otherwise fixed by the first batch (Parquet) may pass it to the component.
    """

    name: str
    path: Path
    state: dict[str, Any] = field(default_factory=dict)
    components: list[Any] = field(default_factory=list, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "state": self.state, "components": []}


def factory_arity(factory: Callable[..., Any]) -> int:
    """0 if ``factory`` can be called with no argument, 1 if it needs exactly one (the
    namespace directory). Raises ``TypeError`` for anything needing more."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return 0
    required = [
        p
        for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if not required:
        return 0
    if len(required) == 1 and required[0].kind is not inspect.Parameter.KEYWORD_ONLY:
        return 1
    names = ", ".join(p.name for p in required)
    raise TypeError(
        f"factory {getattr(factory, '__qualname__', factory)!r} requires ({names}); a factory "
        f"takes no argument, or exactly one: a fresh temporary directory (pathlib.Path)"
    )


def call_factory(factory: Callable[..., Any], path: Path) -> Any:
    """Call a component factory: with no argument, or with ``path`` if it needs one."""
    return factory(path) if factory_arity(factory) == 1 else factory()


def _label(obj: Any) -> str:
    if obj is None:
        return "?"
    if isinstance(obj, str):
        return obj
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{name}" if module else name


class _HarnessBase:
    #: The component class under test (or None when a factory or ``build`` decides).
    target: Any = None
    #: Value kinds the medium round-trips (see ``conformance.data.ALL_FEATURES``); data the
    #: suite generates for this component only uses these.
    features: frozenset[str] = BASIC_FEATURES

    def __init__(self, target: Any = None, *, factory: Callable[..., Any] | None = None) -> None:
        if target is not None:
            self.target = target
        self.factory = factory

    def build(self, ns: Namespace) -> Any:
        """A fresh, unopened component for ``ns``. Default: the factory (called with
        ``ns.path`` if it takes one argument), else ``target()`` with no arguments."""
        if self.factory is not None:
            return call_factory(self.factory, ns.path)
        if self.target is None:
            raise TypeError(
                f"{type(self).__qualname__}: set `target` to the component class, pass a "
                f"factory, or override build(ns)"
            )
        return self.target()

    def canonical_row(self, row: Any) -> Hashable:
        """How a record compares after a trip through the medium (override for lossy media,
        e.g. CSV where every value comes back as text)."""
        return canonical_row(row)

    def cleanup(self, ns: Namespace) -> None:
        """Release anything the harness made for ``ns`` (called once per namespace)."""

    def describe(self) -> str:
        cls = type(self)
        base = f"{cls.__module__}:{cls.__qualname__}"
        if self.factory is not None:
            return f"{base} (factory {_label(self.factory)})"
        return base


class SinkHarness(_HarnessBase):
    """How the suite builds and inspects one sink implementation.

    Subclass and override what your sink needs:

    * ``build(ns)`` — a fresh, unopened sink writing under ``ns.path`` (default: the
      factory, else ``target()``).
    * ``read_back(ns)`` — every record the sink(s) built for ``ns`` persisted, in stored
      order, read **without the sink's code** (e.g. ``csv``, ``json``, ``pyarrow.parquet``).
      Without it, integrity checks report NOT-VERIFIABLE.
    * ``build_append(ns)`` — a fresh sink that appends to what ``ns`` already holds
      (enables close-and-reopen in the stateful check); None if unsupported.
    * ``invalid_record()`` — a record the sink refuses (enables the partial-failure checks).
    * ``canonical_row(row)`` — comparison form for a lossy medium.

    Declarations about the medium: ``ordered`` (read-back order is write order),
    ``readable_before_close`` (``read_back`` works on an open sink after ``flush()``),
    ``persists`` (False for a sink that discards by design), ``accepts_any_record``,
    ``features``.
    """

    ordered: bool = True
    readable_before_close: bool = True
    persists: bool = True
    accepts_any_record: bool = False
    #: True for a dead-letter sink (it stores ``agora.DLQRecord``s): see DLQSinkHarness.
    dlq: bool = False

    def read_back(self, ns: Namespace) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    def build_append(self, ns: Namespace) -> Any | None:
        return None

    def invalid_record(self) -> Any | None:
        return None

    @property
    def has_read_back(self) -> bool:
        return type(self).read_back is not SinkHarness.read_back

    @property
    def has_append(self) -> bool:
        return type(self).build_append is not SinkHarness.build_append


class SourceHarness(_HarnessBase):
    """How the suite builds one source implementation.

    * ``build(ns)`` — a fresh, unopened source over the data of ``ns``. Every call for the
      same namespace must read the same data (resume checks build many instances).
    * ``seed_data(ns, rows)`` — put ``rows`` where sources built for ``ns`` will read them
      (write a file, keep a list in ``ns.state``). Enables the content, empty-source and
      generated-data checks; without it they report NOT-VERIFIABLE and the others compare
      the source with itself.
    * ``canonical_row(row)`` — comparison form (e.g. a CSV source yields text).

    Declaration: ``input_identity`` (default True) — sources built for two namespaces read
    inputs the source can tell apart (files, tables), so a checkpoint taken over one input
    must be refused by a source over another. False only for anonymous in-memory inputs
    (a Python iterable has nothing to recognise it by); the other-input check is then
    UNSUPPORTED, never passed.

    A harness must be picklable (a module-level class) for the fresh-process resume check.
    """

    input_identity: bool = True

    def seed_data(self, ns: Namespace, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    @property
    def has_seed_data(self) -> bool:
        return type(self).seed_data is not SourceHarness.seed_data


class DLQSinkHarness(SinkHarness):
    """How the suite builds and inspects a dead-letter sink (one that stores
    ``agora.DLQRecord``s). Only the DLQ check group runs against it.

    * ``build(ns)`` — a fresh, unopened DLQ sink storing under ``ns.path``.
    * ``read_back(ns)`` — every stored record as the JSON-ready dict
      ``DLQRecord.to_dict()`` gives, in stored order, read **without the sink's code**
      (``sqlite3``, ``json``). Without it the durability checks are NOT-VERIFIABLE.
    * ``files(ns)`` — the files the sink's medium consists of (default: every file under
      ``ns.path``); the owner-only check inspects their permissions. Return ``[]`` for a
      medium that is not a file.
    """

    dlq = True
    accepts_any_record = True

    def read_back(self, ns: Namespace) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    @property
    def has_read_back(self) -> bool:
        return type(self).read_back is not DLQSinkHarness.read_back

    def files(self, ns: Namespace) -> list[Path]:
        return sorted(p for p in ns.path.rglob("*") if p.is_file())
