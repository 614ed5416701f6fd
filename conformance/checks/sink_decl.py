"""Sink declaration checks (SNK-DECL-*): the object is a sink, and its plane declaration is
valid, stable and explicit."""

from __future__ import annotations

import inspect

from conformance._agora import BaseSink, DataPlane, SinkDataPlaneSpec
from conformance.catalogue import Level, sink_check
from conformance.checks._context import SinkContext

__all__ = [
    "check_declaration_is_explicit",
    "check_declaration_is_stable",
    "check_is_a_sink",
    "check_no_side_effects_on_construction",
    "check_plane_declaration_valid",
]

_METHODS = ("open", "write", "write_batch", "write_arrow_batch", "flush", "close")


def _spec(ctx: SinkContext, sink: object) -> SinkDataPlaneSpec:
    try:
        spec = sink.data_plane_spec()  # type: ignore[attr-defined]
    except Exception as exc:
        raise AssertionError(
            f"{ctx.name}.data_plane_spec() raised {type(exc).__name__}: {exc}"
        ) from exc
    assert isinstance(spec, SinkDataPlaneSpec), (
        f"{ctx.name}.data_plane_spec() returned {type(spec).__name__}, not SinkDataPlaneSpec"
    )
    return spec


@sink_check("SNK-DECL-01", "is a BaseSink with a name and async methods")
def check_is_a_sink(ctx: SinkContext) -> None:
    """contract §4: a sink subclasses ``BaseSink``, has a non-empty ``sink_name`` and async
    ``open``/``write``/``write_batch``/``write_arrow_batch``/``flush``/``close``."""
    sink = ctx.probe()
    assert isinstance(sink, BaseSink), (
        f"{ctx.name}: the harness built a {type(sink).__qualname__}, which does not subclass "
        f"agora.BaseSink"
    )
    assert isinstance(sink.sink_name, str) and sink.sink_name, (
        f"{ctx.name}: sink_name must be a non-empty str; got {sink.sink_name!r}"
    )
    not_async = [m for m in _METHODS if not inspect.iscoroutinefunction(getattr(sink, m, None))]
    assert not not_async, f"{ctx.name}: these must be `async def` methods: {not_async}"


@sink_check("SNK-DECL-02", "plane declaration is valid (rows accepted, native within accepted)")
def check_plane_declaration_valid(ctx: SinkContext) -> None:
    """contract §2: ``data_plane_spec()`` reads without error; every plane is a ``DataPlane``;
    rows are always accepted; native planes are non-empty and a subset of the accepted
    ones; the plane spec names the sink."""
    sink = ctx.probe()
    spec = _spec(ctx, sink)
    planes = set(spec.accepted_planes) | set(spec.native_planes)
    bad = [p for p in planes if not isinstance(p, DataPlane)]
    assert not bad, f"{ctx.name}: declared planes {bad!r} are not DataPlane members"
    assert DataPlane.PYTHON_ROWS in spec.accepted_planes, (
        f"{ctx.name}: python_rows must always be accepted; accepted={sorted(spec.accepted_planes)}"
    )
    assert spec.native_planes, f"{ctx.name}: declares no native plane at all"
    extra = set(spec.native_planes) - set(spec.accepted_planes)
    assert not extra, f"{ctx.name}: native planes {sorted(extra)} are not accepted"
    assert spec.sink_name == sink.sink_name, (
        f"{ctx.name}: data_plane_spec().sink_name is {spec.sink_name!r} but sink_name is "
        f"{sink.sink_name!r}"
    )


@sink_check("SNK-DECL-03", "plane declaration is stable across calls and instances")
def check_declaration_is_stable(ctx: SinkContext) -> None:
    """contract §2: one rule decides both the plan and the runtime routing, so the
    declaration must not change between reads (planning and routing read it separately)
    or between two instances built the same way."""
    first = _spec(ctx, ctx.probe())
    again = _spec(ctx, ctx.probe())
    other = _spec(ctx, ctx.build(ctx.namespace("twin")))
    for label, spec in (("a second call", again), ("a second instance", other)):
        assert (spec.accepted_planes, spec.native_planes) == (
            first.accepted_planes,
            first.native_planes,
        ), (
            f"{ctx.name}: {label} declares accepted={sorted(spec.accepted_planes)} "
            f"native={sorted(spec.native_planes)}; first read said "
            f"accepted={sorted(first.accepted_planes)} native={sorted(first.native_planes)}"
        )


@sink_check("SNK-DECL-04", "declares planes explicitly (no deprecated flags)", level=Level.SHOULD)
def check_declaration_is_explicit(ctx: SinkContext) -> None:
    """contract §2: the legacy flags ``batch_writable_native`` / ``arrow_passthrough_native``
    are deprecated in 0.3 and go away in 0.4; declare ``native_data_planes`` (or return
    planes from ``sink_capabilities()``) instead."""
    sink = ctx.probe()
    caps = sink.sink_capabilities()
    explicit = sink.accepted_data_planes is not None or sink.native_data_planes is not None
    if caps is not None:
        explicit = explicit or (
            caps.accepted_data_planes is not None or caps.native_data_planes is not None
        )
    legacy = [
        flag
        for flag in ("batch_writable_native", "arrow_passthrough_native")
        if getattr(sink, flag, None) or (caps is not None and getattr(caps, flag, None))
    ]
    assert explicit or not legacy, (
        f"{ctx.name} declares its planes through deprecated flags {legacy}; declare "
        f"native_data_planes (and accepted_data_planes) instead — the bridge goes in 0.4"
    )


@sink_check("SNK-DECL-05", "construction creates nothing in its namespace", level=Level.SHOULD)
def check_no_side_effects_on_construction(ctx: SinkContext) -> None:
    """contract §7 (startup order): nothing is opened before the plan is valid, so building a
    sink must not create output — files appear at ``open()`` at the earliest."""
    ns = ctx.namespace("construct")
    before = sorted(p.name for p in ns.path.iterdir())
    ctx.build(ns)
    after = sorted(p.name for p in ns.path.iterdir())
    created = sorted(set(after) - set(before))
    assert not created, f"{ctx.name}: constructing the sink created {created} before open()"
