"""What a check gets: fresh namespaces, component construction through the harness,
independent read-back, capabilities, test data, and clean-up of whatever a check left open."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from conformance._agora import BaseSink, BaseSource, DataPlane
from conformance.catalogue import NotVerifiable, Unsupported
from conformance.data import standard_batch, standard_rows
from conformance.harness import Namespace, SinkHarness, SourceHarness
from conformance.levels import Profile
from conformance.targets import Target

__all__ = [
    "HarnessMismatch",
    "ProbeRecord",
    "SinkContext",
    "SourceContext",
    "open_files_under",
    "safe_repr",
]


class HarnessMismatch(Exception):
    """The harness built something other than the component under test: every result it
    produced would describe the wrong class, so the check cannot run (a usage error)."""


class ProbeRecord:
    """Base of the records the suite itself injects to provoke failures (e.g. a record that
    explodes when read). The suite's own comparisons never evaluate one: a probe a sink
    accepted is compared by its type alone — a check must not fail on its own probe."""


def safe_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` that never raises and stays short (opaque records may be hostile)."""
    try:
        text = repr(value)
    except Exception as exc:  # a record whose repr raises is still a record
        text = f"<{type(value).__qualname__} (repr raised {type(exc).__name__})>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def expected_class(target: Target) -> type | None:
    """The class every component built for ``target`` must be an instance of, if known."""
    for candidate in (target.component_class, getattr(target.harness, "target", None)):
        if isinstance(candidate, type):
            return candidate
    return None


def check_built(target: Target, component: Any) -> None:
    """Raise HarnessMismatch unless ``component`` is an instance of the named target."""
    cls = expected_class(target)
    if cls is not None and not isinstance(component, cls):
        built = type(component)
        raise HarnessMismatch(
            f"the harness {target.harness.describe()} built a {built.__module__}."
            f"{built.__qualname__}, not a {cls.__module__}.{cls.__qualname__} (the target "
            f"{target.label}); every result would describe the wrong class — build "
            f"`self.target(...)` in the harness (a harness inherited by a subclass then "
            f"builds the subclass)"
        )


#: How long a file may stay open after close() returns. pyarrow's streaming readers close
#: their input on an I/O thread a millisecond or two after close(); a real leak lasts.
RELEASE_GRACE_S = 1.0


def open_files_under(path: Path, grace_s: float = RELEASE_GRACE_S) -> list[str]:
    """Files under ``path`` this process still holds open (file descriptors), polled for
    up to ``grace_s`` seconds so that an asynchronous release is not reported."""
    root = str(path.resolve())
    deadline = time.monotonic() + grace_s
    while True:
        held = [
            f.path
            for f in psutil.Process(os.getpid()).open_files()
            if f.path == root or f.path.startswith(root + os.sep)
        ]
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.005)


class _Context:
    kind = ""

    def __init__(self, target: Target, workdir: Path, profile: Profile) -> None:
        self.target = target
        self.workdir = Path(workdir)
        self.profile = profile
        self._namespaces: list[Namespace] = []
        self._counter = 0
        self._probe: Any = None

    @property
    def name(self) -> str:
        return self.target.label

    # -- namespaces and components ---------------------------------------------------
    def namespace(self, label: str = "ns") -> Namespace:
        """A fresh empty directory (and scratch state) for components of this check."""
        self._counter += 1
        path = self.workdir / f"{self._counter:03d}-{label}"
        path.mkdir(parents=True, exist_ok=False)
        ns = Namespace(name=f"cf{self._counter:03d}_{label}".replace("-", "_"), path=path)
        self._namespaces.append(ns)
        return ns

    def build(self, ns: Namespace) -> Any:
        """A fresh component for ``ns`` from the harness, tracked for clean-up."""
        component = self.target.harness.build(ns)
        ns.components.append(component)
        check_built(self.target, component)
        return component

    def canon(self, rows: Sequence[Any]) -> list[Hashable]:
        """Comparison forms of ``rows``. A probe record the suite injected is never
        evaluated (it compares by type), and a record the harness cannot canonicalise is
        compared by type and repr — the suite's own diff must not fail on what a sink was
        allowed to accept."""
        return [self._canon_one(row) for row in rows]

    def _canon_one(self, row: Any) -> Hashable:
        if isinstance(row, ProbeRecord):
            return ("<conformance probe>", type(row).__qualname__)
        try:
            return self.target.harness.canonical_row(row)
        except Exception:
            return ("<opaque record>", type(row).__qualname__, safe_repr(row))

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Namespaces created inside are closed and deleted on exit (one Hypothesis
        example must not leave files or open handles for the next)."""
        mark = len(self._namespaces)
        try:
            yield
        finally:
            created = self._namespaces[mark:]
            del self._namespaces[mark:]
            self._release(created, delete=True)

    def cleanup(self) -> None:
        """Close whatever a check left open and let the harness release its resources.

        Runs after every check, pass or fail, so a failing check cannot leak handles (and
        ResourceWarnings) into the next one. Errors here are ignored: the check's own
        outcome is what matters.
        """
        created, self._namespaces = self._namespaces, []
        self._release(created, delete=False)

    def _release(self, namespaces: list[Namespace], *, delete: bool) -> None:
        components = [c for ns in namespaces for c in ns.components]
        if components:
            asyncio.run(_close_quietly(components))
        for ns in namespaces:
            ns.components.clear()
            with contextlib.suppress(Exception):
                self.target.harness.cleanup(ns)
            if delete:
                shutil.rmtree(ns.path, ignore_errors=True)

    # -- data ------------------------------------------------------------------------
    @property
    def features(self) -> frozenset[str]:
        return frozenset(self.target.harness.features)

    def rows(self, n: int, *, start: int = 0) -> list[dict[str, Any]]:
        return standard_rows(n, self.features, start=start)

    def batch(self, n: int, *, start: int = 0) -> Any:
        return standard_batch(n, self.features, start=start)


async def _close_quietly(components: list[Any]) -> None:
    for component in components:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(component.close(), timeout=10)


class SinkContext(_Context):
    """Context for sink checks."""

    kind = "sink"

    @property
    def harness(self) -> SinkHarness:
        return self.target.harness  # type: ignore[return-value]

    def probe(self) -> Any:
        """One built (never opened) sink, for declarations."""
        if self._probe is None:
            self._probe = self.build(self.namespace("probe"))
        return self._probe

    def spec(self) -> Any:
        return self.probe().data_plane_spec()

    def capabilities(self) -> frozenset[str]:
        caps: set[str] = set()
        probe = self.probe()
        if isinstance(probe, BaseSink):
            try:
                native = probe.data_plane_spec().native_planes
            except Exception:  # an invalid declaration is SNK-DECL-02's finding
                native = ()
            caps.add("arrow-native" if DataPlane.ARROW_BATCHES in native else "rows-only")
        h = self.harness
        if h.persists:
            caps.add("persists")
            if h.readable_before_close:
                caps.add("readable-before-close")
        if h.ordered:
            caps.add("ordered")
        if not h.accepts_any_record:
            caps.add("rejects-records")
        if h.dlq:
            caps.add("dlq")
        return frozenset(caps)

    @property
    def can_read_back(self) -> bool:
        return self.harness.persists and self.harness.has_read_back

    def read_back(self, ns: Namespace) -> list[Hashable]:
        """Canonical rows the sink(s) of ``ns`` persisted, read by the harness (never by
        the sink). Raises Unsupported for discarding sinks, NotVerifiable without a
        read-back."""
        if not self.harness.persists:
            raise Unsupported(f"the harness declares that {self.name} discards what it is given")
        if not self.harness.has_read_back:
            raise NotVerifiable(
                f"no independent read-back for {self.name}: supply a SinkHarness with "
                f"read_back(ns) (--sink-harness pkg.mod:MyHarness) to verify what it persisted",
                hook="read_back()",
            )
        return self.canon(list(self.harness.read_back(ns)))

    def invalid_record(self) -> Any:
        if self.harness.accepts_any_record:
            raise Unsupported(f"the harness declares that {self.name} accepts every record")
        record = self.harness.invalid_record()
        if record is None:
            raise NotVerifiable(
                f"the harness gives no invalid_record() for {self.name}, so per-record "
                f"failure reporting cannot be exercised",
                hook="invalid_record()",
            )
        return record


class SourceContext(_Context):
    """Context for source checks."""

    kind = "source"

    #: Rows in the standard seeded data set: not a multiple of common batch sizes, so the
    #: last batch is a partial one.
    STANDARD_ROWS = 23

    @property
    def harness(self) -> SourceHarness:
        return self.target.harness  # type: ignore[return-value]

    def seeded(self, rows: list[dict[str, Any]] | None = None, label: str = "data") -> Namespace:
        """A namespace holding ``rows`` (default: the standard data set) if the harness can
        seed data; otherwise one holding whatever the harness's sources read."""
        ns = self.namespace(label)
        if self.harness.has_seed_data:
            self.harness.seed_data(ns, self.rows(self.STANDARD_ROWS) if rows is None else rows)
        return ns

    def require_seed_data(self) -> None:
        if not self.harness.has_seed_data:
            raise NotVerifiable(
                f"the harness cannot seed data for {self.name} (no seed_data(ns, rows)), so "
                f"what it emits cannot be compared with known input",
                hook="seed_data()",
            )

    def probe(self) -> Any:
        if self._probe is None:
            self._probe = self.build(self.seeded(label="probe"))
        return self._probe

    def plane(self) -> DataPlane:
        return DataPlane(self.probe().data_plane_spec().emitted_plane)

    def capabilities(self) -> frozenset[str]:
        caps: set[str] = set()
        probe = self.probe()
        if isinstance(probe, BaseSource):
            caps.add("checkpoint" if probe.supports_checkpoint else "no-checkpoint")
            try:
                plane = self.plane()
            except Exception:  # an invalid declaration is SRC-DECL-02's finding
                plane = None
            if plane is DataPlane.ARROW_BATCHES:
                caps.add("arrow")
            elif plane is DataPlane.PYTHON_BATCHES:
                caps.add("python-batches")
            elif plane is DataPlane.PYTHON_ROWS:
                caps.add("rows")
        if self.harness.input_identity:
            caps.add("input-identity")
        return frozenset(caps)
