"""Import path kept for 0.3.0 plugins: the sink contract, fan-out, router and plane look-ups."""

from __future__ import annotations

from typing import Any

from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec
from agora.records import WriteResult
from agora.sinks import BaseSink, SinkFanOut, SinkRouter
from agora.sinks._members import parallel_write_hints
from agora.sinks.base import DUCK_SINK_METHODS, DuckTypedSink

# ``__all__`` lists only objects of the ``agora`` facade; the plane look-ups below and
# ``SinkCapabilities`` are importable by name for 0.3.0 code.
__all__ = ["BaseSink", "SinkFanOut", "SinkRouter", "WriteResult"]

# Planes listed in this order in every tuple returned here, so tuples compare equal.
_PLANE_ORDER: tuple[DataPlane, ...] = tuple(DataPlane)


def sink_data_plane_spec(sink: Any) -> SinkDataPlaneSpec:
    """The planes ``sink`` accepts and handles natively, as the runtime will read them.

    A ``BaseSink`` gives its own declaration; any other object with async ``open`` /
    ``write`` / ``close`` is read the way a pipeline reads it. Anything else raises a
    TypeError naming the object and the methods a sink needs.
    """
    if isinstance(sink, BaseSink):
        return sink.data_plane_spec()
    if all(callable(getattr(sink, name, None)) for name in DUCK_SINK_METHODS):
        return DuckTypedSink(sink).data_plane_spec()
    raise TypeError(
        f"sink must be a BaseSink or have async {', '.join(DUCK_SINK_METHODS)}; "
        f"got {type(sink).__qualname__} — subclass BaseSink or add those methods"
    )


def sink_capabilities(sink: Any) -> SinkCapabilities:
    """Everything ``sink`` declares, as one ``SinkCapabilities`` with every field set.

    Accepted and native planes are tuples in ``DataPlane`` order (rows, batches, Arrow);
    the legacy plane booleans are filled in from them; ``parallel_writes_safe`` /
    ``ordered_writes_required`` are the sink's own declaration (default: not safe, order
    required).
    """
    spec = sink_data_plane_spec(sink)
    accepted = tuple(p for p in _PLANE_ORDER if p in spec.accepted_planes)
    native = tuple(p for p in _PLANE_ORDER if p in spec.native_planes)
    parallel_safe, ordered = parallel_write_hints(sink)
    return SinkCapabilities(
        accepted_data_planes=accepted,
        native_data_planes=native,
        batch_writable_native=DataPlane.PYTHON_BATCHES in spec.native_planes,
        arrow_passthrough_native=DataPlane.ARROW_BATCHES in spec.native_planes,
        parallel_writes_safe=parallel_safe,
        ordered_writes_required=ordered,
    )
