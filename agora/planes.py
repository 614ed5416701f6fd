"""Data planes: what shape a batch has, what each component declares, and the one rule
that picks the plane a sink receives (used by planning *and* by runtime routing).

Also holds the 0.3 bridge for legacy boolean flags (``supports_batch_emit``,
``emits_arrow_batches``, ``batch_writable_native``, ``arrow_passthrough_native``): they
are still honoured, with one ``DeprecationWarning`` per class per process.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DataPlane",
    "SinkCapabilities",
    "SinkDataPlaneSpec",
    "SourceDataPlaneSpec",
    "warn_legacy_flag",
]


class DataPlane(StrEnum):
    """The shape of data flowing between components."""

    PYTHON_ROWS = "python_rows"  # one dict per call
    PYTHON_BATCHES = "python_batches"  # a list[dict] per call
    ARROW_BATCHES = "arrow_batches"  # a pyarrow.RecordBatch per call


@dataclass(frozen=True)
class SourceDataPlaneSpec:
    """What a source emits. ``emitted_plane`` is authoritative; the two booleans mirror it."""

    source_name: str
    emitted_plane: DataPlane
    supports_batch_emit: bool
    emits_arrow_batches: bool

    @classmethod
    def for_plane(cls, source_name: str, plane: DataPlane | str) -> SourceDataPlaneSpec:
        plane = DataPlane(plane)
        return cls(
            source_name=source_name,
            emitted_plane=plane,
            supports_batch_emit=plane is not DataPlane.PYTHON_ROWS,
            emits_arrow_batches=plane is DataPlane.ARROW_BATCHES,
        )


@dataclass(frozen=True)
class SinkCapabilities:
    """Explicit declaration a sink may return from ``sink_capabilities()``.

    ``accepted_data_planes`` / ``native_data_planes`` are the 0.3 way. The two plane
    booleans are the deprecated legacy flags, still honoured (with a warning) when no
    explicit planes are given; a declaration returned by ``sink_capabilities()`` is the
    whole of it, so a flag it leaves at its default is off (``None`` defers to the
    sink's class attribute of that name).

    ``parallel_writes_safe`` / ``ordered_writes_required`` tell a concurrent
    ``SinkFanOut`` whether it may write one sink's records of a batch at the same time
    (both must allow it: safe, and order not required). They never change which records
    are written or how a failure is reported.
    """

    accepted_data_planes: tuple[DataPlane, ...] | None = None
    native_data_planes: tuple[DataPlane, ...] | None = None
    batch_writable_native: bool | None = False
    arrow_passthrough_native: bool | None = False
    parallel_writes_safe: bool = False
    ordered_writes_required: bool = True


@dataclass(frozen=True)
class SinkDataPlaneSpec:
    """What a sink accepts and handles natively. Rows are always accepted.

    Both plane fields are tuples in ``DataPlane`` order (rows, batches, Arrow) whatever
    iterable they were given as, so a declaration compares equal to the tuple a 0.3.0
    plugin writes and no plane is listed twice.
    """

    sink_name: str
    accepted_planes: tuple[DataPlane, ...]
    native_planes: tuple[DataPlane, ...]

    def __post_init__(self) -> None:
        accepted = _ordered(_planes(self.sink_name, self.accepted_planes))
        native = _ordered(_planes(self.sink_name, self.native_planes))
        # frozen dataclass: normalising in place needs object.__setattr__
        object.__setattr__(self, "accepted_planes", accepted)
        object.__setattr__(self, "native_planes", native)
        if not set(native) <= set(accepted):
            extra = sorted(p.value for p in set(native) - set(accepted))
            raise ValueError(
                f"sink {self.sink_name!r} declares native planes {extra} that it does not accept; "
                f"native planes must be a subset of accepted planes — add them to "
                f"accepted_data_planes or remove them from native_data_planes"
            )

    @classmethod
    def build(
        cls,
        sink_name: str,
        accepted: Iterable[DataPlane | str] | None,
        native: Iterable[DataPlane | str] | None,
    ) -> SinkDataPlaneSpec:
        """Normalise a declaration: rows always accepted; native defaults to rows."""
        native_set = frozenset(_planes(sink_name, native)) if native is not None else None
        if accepted is not None:
            accepted_set = frozenset(_planes(sink_name, accepted)) | {DataPlane.PYTHON_ROWS}
        else:
            accepted_set = (native_set or frozenset()) | {DataPlane.PYTHON_ROWS}
        if native_set is None:
            native_set = frozenset({DataPlane.PYTHON_ROWS})
        return cls(
            sink_name=sink_name,
            accepted_planes=tuple(accepted_set),
            native_planes=tuple(native_set),
        )

    def selected_plane_for(self, upstream: DataPlane | str) -> DataPlane:
        """The plane this sink receives when the writer input is ``upstream``.

        Upstream itself if native; else ``python_batches`` if upstream is Arrow and batches
        are native; else ``python_rows``. This is the only routing rule in Agora.
        """
        upstream = DataPlane(upstream)
        if upstream in self.native_planes:
            return upstream
        if upstream is DataPlane.ARROW_BATCHES and DataPlane.PYTHON_BATCHES in self.native_planes:
            return DataPlane.PYTHON_BATCHES
        return DataPlane.PYTHON_ROWS

    def is_downgraded(self, upstream: DataPlane | str) -> bool:
        return self.selected_plane_for(upstream) != DataPlane(upstream)


def _planes(owner: str, planes: Iterable[DataPlane | str]) -> list[DataPlane]:
    if isinstance(planes, (str, DataPlane)):
        planes = [planes]
    out: list[DataPlane] = []
    for plane in planes:
        try:
            out.append(DataPlane(plane))
        except ValueError:
            valid = ", ".join(p.value for p in DataPlane)
            raise ValueError(
                f"{owner!r} declares unknown data plane {plane!r}; valid planes are {valid}"
            ) from None
    return out


_SINK_FLAGS = frozenset({"batch_writable_native", "arrow_passthrough_native"})


def _ordered(planes: Iterable[DataPlane]) -> tuple[DataPlane, ...]:
    present = set(planes)
    return tuple(p for p in DataPlane if p in present)


_warned: set[tuple[type, str]] = set()
_warned_lock = threading.Lock()


def warn_legacy_flag(cls: type, flag: str, replacement: str) -> None:
    """Emit the legacy-flag ``DeprecationWarning`` once per (class, flag) per process."""
    key = (cls, flag)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    # The wording "legacy <kind> data-plane bool flags" is the one 0.3.0 code filters on.
    kind = "sink" if flag in _SINK_FLAGS else "source"
    warnings.warn(
        f"{cls.__qualname__} uses legacy {kind} data-plane bool flags: {flag!r} is "
        f"deprecated; declare {replacement} instead — the legacy flag bridge goes away in "
        f"agora 0.4.0",
        DeprecationWarning,
        stacklevel=3,
    )
