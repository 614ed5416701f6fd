"""Source declaration and output checks (SRC-DECL-*, SRC-OUT-*): the object is a source, its
plane declaration is valid and honest, and what it emits is well-formed, stable and
deterministic."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pyarrow as pa

from conformance._agora import BaseSource, DataPlane, SourceDataPlaneSpec
from conformance.catalogue import Level, source_check
from conformance.checks._context import SourceContext
from conformance.checks._source_io import is_malformed, read_source, rows_of
from conformance.data import describe_sequence_diff

__all__ = [
    "check_arrow_batches_validate",
    "check_declaration_is_explicit",
    "check_emits_declared_plane",
    "check_emits_seeded_data",
    "check_emitted_units_stay_unchanged",
    "check_implements_declared_stream",
    "check_is_a_source",
    "check_no_side_effects_on_construction",
    "check_plane_declaration_valid",
    "check_reads_are_deterministic",
    "check_schema_stable",
]


@source_check("SRC-DECL-01", "is a BaseSource with a name and async lifecycle")
def check_is_a_source(ctx: SourceContext) -> None:
    """contract §3: a source subclasses ``BaseSource``, has a non-empty ``source_name`` (it
    keys checkpoints) and async ``open``, ``close`` and ``prepare_resume``."""
    src = ctx.probe()
    assert isinstance(src, BaseSource), (
        f"{ctx.name}: the harness built a {type(src).__qualname__}, which does not subclass "
        f"agora.BaseSource"
    )
    assert isinstance(src.source_name, str) and src.source_name, (
        f"{ctx.name}: source_name must be a non-empty str; got {src.source_name!r}"
    )
    not_async = [
        m
        for m in ("open", "close", "prepare_resume")
        if not inspect.iscoroutinefunction(getattr(src, m, None))
    ]
    assert not not_async, f"{ctx.name}: these must be `async def` methods: {not_async}"


@source_check("SRC-DECL-02", "plane declaration is valid and consistent")
def check_plane_declaration_valid(ctx: SourceContext) -> None:
    """contract §2: ``data_plane_spec()`` returns a ``SourceDataPlaneSpec`` whose
    ``emitted_plane`` is a ``DataPlane``, whose two booleans mirror it, which names the
    source, which ``emitted_data_plane`` agrees with, and which is stable across calls."""
    src = ctx.probe()
    try:
        spec = src.data_plane_spec()
    except Exception as exc:
        raise AssertionError(
            f"{ctx.name}.data_plane_spec() raised {type(exc).__name__}: {exc}"
        ) from exc
    assert isinstance(spec, SourceDataPlaneSpec), (
        f"{ctx.name}.data_plane_spec() returned {type(spec).__name__}, not SourceDataPlaneSpec"
    )
    assert isinstance(spec.emitted_plane, DataPlane), (
        f"{ctx.name}: emitted_plane {spec.emitted_plane!r} is not a DataPlane"
    )
    plane = spec.emitted_plane
    assert spec.supports_batch_emit == (plane is not DataPlane.PYTHON_ROWS), (
        f"{ctx.name}: supports_batch_emit={spec.supports_batch_emit} contradicts "
        f"plane {plane.value}"
    )
    assert spec.emits_arrow_batches == (plane is DataPlane.ARROW_BATCHES), (
        f"{ctx.name}: emits_arrow_batches={spec.emits_arrow_batches} contradicts "
        f"plane {plane.value}"
    )
    assert spec.source_name == src.source_name, (
        f"{ctx.name}: spec names {spec.source_name!r}, source_name is {src.source_name!r}"
    )
    assert src.emitted_data_plane == plane, (
        f"{ctx.name}: emitted_data_plane {src.emitted_data_plane!r} differs from the "
        f"spec's {plane!r}"
    )
    again = src.data_plane_spec()
    assert again == spec, f"{ctx.name}: data_plane_spec() changed between calls: {spec} → {again}"


@source_check("SRC-DECL-03", "implements the stream method of its declared plane")
async def check_implements_declared_stream(ctx: SourceContext) -> None:
    """contract §3: a row source implements ``stream()``, a batch source ``stream_batches()``;
    the runtime calls exactly the one the declared plane names."""
    src = ctx.build(ctx.seeded())
    plane = ctx.plane()
    method = "stream" if plane is DataPlane.PYTHON_ROWS else "stream_batches"
    impl = getattr(type(src), method)
    assert impl is not getattr(BaseSource, method), (
        f"{ctx.name} declares {plane.value} but does not implement {method}()"
    )
    await src.prepare_resume(None)
    await src.open()
    try:
        stream = getattr(src, method)()
        assert hasattr(stream, "__anext__"), (
            f"{ctx.name}.{method}() returned {type(stream).__name__}, not an async iterator"
        )
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    finally:
        await src.close()


@source_check(
    "SRC-DECL-04", "declares its plane explicitly (no deprecated flags)", level=Level.SHOULD
)
def check_declaration_is_explicit(ctx: SourceContext) -> None:
    """contract §2: ``supports_batch_emit`` / ``emits_arrow_batches`` are deprecated in 0.3;
    override ``data_plane_spec()`` instead."""
    src = ctx.probe()
    overrides = type(src).data_plane_spec is not BaseSource.data_plane_spec
    legacy = [f for f in ("supports_batch_emit", "emits_arrow_batches") if getattr(src, f, None)]
    assert overrides or not legacy, (
        f"{ctx.name} declares its plane through deprecated flags {legacy}; override "
        f"data_plane_spec() — the bridge goes in 0.4"
    )


@source_check("SRC-DECL-05", "construction opens and creates nothing", level=Level.SHOULD)
def check_no_side_effects_on_construction(ctx: SourceContext) -> None:
    """contract §2 and §7: nothing is opened or read before the plan is valid, so building a
    source must not create files or hold any open."""
    from conformance.checks._context import open_files_under

    ns = ctx.seeded(label="construct")
    before = sorted(p.name for p in ns.path.iterdir())
    ctx.build(ns)
    created = sorted(set(p.name for p in ns.path.iterdir()) - set(before))
    assert not created, f"{ctx.name}: constructing the source created {created}"
    held = open_files_under(ns.path)
    assert not held, f"{ctx.name}: constructing the source opened {held}"


@source_check("SRC-OUT-01", "emits what its declared plane says")
async def check_emits_declared_plane(ctx: SourceContext) -> None:
    """contract §2 and §3: ``python_rows`` items are mappings, ``python_batches`` items are
    lists of mappings, ``arrow_batches`` items are ``pyarrow.RecordBatch`` (a malformed-
    record marker may stand in for a record). A source whose declaration lies breaks the
    plan and every middleware after it."""
    read = await read_source(ctx, ctx.seeded(), keep_raw=True, observe=False)
    plane = read.plane
    for i, unit in enumerate(read.units):
        item = unit.raw
        if is_malformed(item):
            continue
        if plane is DataPlane.PYTHON_ROWS:
            ok = isinstance(item, Mapping)
        elif plane is DataPlane.PYTHON_BATCHES:
            ok = isinstance(item, list) and all(
                isinstance(r, Mapping) or is_malformed(r) for r in item
            )
        else:
            ok = isinstance(item, pa.RecordBatch)
        inner = f" of {type(item[0]).__name__}" if isinstance(item, list) and item else ""
        declared = plane.value if plane is not None else "?"
        assert ok, f"{ctx.name} declares {declared} but unit {i} is a {type(item).__name__}{inner}"


@source_check("SRC-OUT-02", "emits exactly the seeded data, in order")
async def check_emits_seeded_data(ctx: SourceContext) -> None:
    """contract §3: a source over known input emits every record of it once, in input order,
    with its values intact (compared in the harness's canonical form)."""
    ctx.require_seed_data()
    rows = ctx.rows(ctx.STANDARD_ROWS)
    read = await read_source(ctx, ctx.seeded(rows), observe=False)
    diff = describe_sequence_diff(ctx.canon(rows), read.rows)
    assert diff is None, f"{ctx.name} did not emit the seeded records: {diff}"


@source_check("SRC-OUT-03", "Arrow schema is stable across batches", requires=("arrow",))
async def check_schema_stable(ctx: SourceContext) -> None:
    """contract §2: Arrow middleware and Arrow-native sinks see one schema per stream — every
    batch has the schema of the first (names and types)."""
    read = await read_source(ctx, ctx.seeded(), keep_raw=True, observe=False)
    batches = [u.raw for u in read.units if isinstance(u.raw, pa.RecordBatch)]
    assert batches, f"{ctx.name} emitted no RecordBatch from the seeded data"
    first = batches[0].schema
    for i, batch in enumerate(batches[1:], start=1):
        assert batch.schema.equals(first), (
            f"{ctx.name}: batch {i} has schema {batch.schema} but batch 0 had {first}"
        )


@source_check("SRC-OUT-04", "two fresh instances emit the same sequence")
async def check_reads_are_deterministic(ctx: SourceContext) -> None:
    """contract §3: resume is exact only if a fresh instance over the same input emits the
    same units — two full reads must agree record for record."""
    ns = ctx.seeded()
    first = await read_source(ctx, ns, observe=False)
    second = await read_source(ctx, ns, observe=False)
    diff = describe_sequence_diff(first.rows, second.rows)
    assert diff is None, f"{ctx.name}: two reads of the same input differ: {diff}"


@source_check("SRC-OUT-05", "emitted units do not change as reading continues")
async def check_emitted_units_stay_unchanged(ctx: SourceContext) -> None:
    """contract §3 and §6 (several batches in flight): the runtime holds emitted units while
    later ones are read, so a source must not reuse or edit what it already yielded."""
    read = await read_source(ctx, ctx.seeded(), keep_raw=True, observe=False)
    for i, unit in enumerate(read.units):
        if unit.malformed:
            continue
        now = ctx.canon(rows_of(unit.raw))
        assert now == unit.snapshot, (
            f"{ctx.name}: unit {i} changed after later units were read: was "
            f"{unit.snapshot[:2]}..., now {now[:2]}..."
        )


@source_check(
    "SRC-OUT-06", "Arrow batches pass full validation", level=Level.SHOULD, requires=("arrow",)
)
async def check_arrow_batches_validate(ctx: SourceContext) -> None:
    """contract §2: an emitted RecordBatch is consumed by Arrow kernels and IPC transport
    (process lanes), so it must be internally consistent (``validate(full=True)``)."""
    read = await read_source(ctx, ctx.seeded(), keep_raw=True, observe=False)
    for i, unit in enumerate(read.units):
        if isinstance(unit.raw, pa.RecordBatch):
            try:
                unit.raw.validate(full=True)
            except pa.ArrowInvalid as exc:
                raise AssertionError(f"{ctx.name}: batch {i} is invalid: {exc}") from exc
