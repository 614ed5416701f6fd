"""Sink property and stateful checks (SNK-PBT-*): generated data in generated batch
partitions, generated Arrow slices, and a state machine over write / write_batch /
write_arrow_batch / flush / close-and-reopen with read-back invariants."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance.catalogue import sink_check
from conformance.checks._context import SinkContext
from conformance.checks._sink_ops import assert_persisted, write_all
from conformance.checks.sink_plane import write_arrow
from conformance.strategies import partitions, record_batches, sliced_batches

__all__ = [
    "check_generated_arrow_slices_roundtrip",
    "check_generated_partitions_persist",
    "check_stateful_sink",
    "make_sink_machine",
]


def _require_read_back(ctx: SinkContext) -> None:
    if not ctx.can_read_back:
        ctx.read_back(ctx.namespace("no-readback"))  # raises Unsupported / NotVerifiable


@sink_check(
    "SNK-PBT-01",
    "any generated records, in any batch partition, persist exactly",
    requires=("persists",),
    hypothesis=True,
)
def check_generated_partitions_persist(ctx: SinkContext) -> None:
    """contract §4: for generated records (every declared value kind, nulls included) split
    into any sequence of batches — empty ones included — what is persisted is exactly
    what was written (in order, on an ordered medium)."""
    _require_read_back(ctx)
    from hypothesis import given

    @given(data=st.data(), batch=record_batches(ctx.features, max_rows=25))
    def prop(data: Any, batch: Any) -> None:
        rows = batch.to_pylist()
        sizes = data.draw(partitions(len(rows)), label="batch sizes")
        with ctx.scope():
            ns = ctx.namespace("pbt")
            ns.state["schema"] = batch.schema
            sink = ctx.build(ns)

            async def scenario() -> None:
                await sink.open()
                await write_all(ctx, sink, rows, sizes)
                await sink.close()

            asyncio.run(scenario())
            assert_persisted(
                ctx, ns, rows, f"generated records in batches {sizes}", ordered=ctx.harness.ordered
            )

    ctx.profile.apply_seed(ctx.profile.hypothesis_settings()(prop))()


@sink_check(
    "SNK-PBT-02",
    "generated RecordBatches and slices round-trip through write_arrow_batch",
    requires=("arrow-native", "persists"),
    hypothesis=True,
)
def check_generated_arrow_slices_roundtrip(ctx: SinkContext) -> None:
    """contract §2 and §3 (slices at the source boundary): generated batches of every declared
    type, and slices of them at any offset and length, persist exactly their rows."""
    _require_read_back(ctx)
    from hypothesis import given

    @given(sliced=sliced_batches(ctx.features, max_rows=25))
    def prop(sliced: tuple[Any, int, int]) -> None:
        parent, offset, length = sliced
        piece = parent.slice(offset, length)
        with ctx.scope():
            ns = ctx.namespace("pbtarrow")
            ns.state["schema"] = parent.schema
            sink = ctx.build(ns)

            async def scenario() -> None:
                await sink.open()
                await write_arrow(ctx, sink, piece)
                await sink.close()

            asyncio.run(scenario())
            assert_persisted(
                ctx,
                ns,
                piece.to_pylist(),
                f"slice({offset}, {length}) of a {parent.num_rows}-row batch",
            )

    ctx.profile.apply_seed(ctx.profile.hypothesis_settings()(prop))()


def make_sink_machine(ctx: SinkContext) -> type[RuleBasedStateMachine]:
    """A state machine driving one sink through random lifecycle steps.

    Model: the list of records acknowledged as written. Invariants: after ``flush()``
    (when the medium is readable while open), after every close, and at the end, the
    read-back equals the model (as a sequence on an ordered medium).
    """
    caps = ctx.capabilities()
    arrow = "arrow-native" in caps
    readable = "readable-before-close" in caps
    reopen = ctx.harness.has_append
    ordered = ctx.harness.ordered

    class SinkMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.scope = ctx.scope()
            self.scope.__enter__()
            self.ns = ctx.namespace("machine")
            self.sink: Any = None
            self.acked: list[dict[str, Any]] = []
            self.next_id = 0

        def run(self, coro: Any) -> Any:
            return self.runner.run(coro)

        def take(self, n: int) -> list[dict[str, Any]]:
            rows = ctx.rows(n, start=self.next_id)
            self.next_id += n
            return rows

        def check(self, when: str) -> None:
            note(f"read-back check {when}: {len(self.acked)} record(s) acknowledged")
            assert_persisted(ctx, self.ns, self.acked, when, ordered=ordered)

        @initialize()
        def start(self) -> None:
            self.sink = ctx.build(self.ns)
            self.run(self.sink.open())

        @rule()
        def write_one(self) -> None:
            row = self.take(1)
            self.run(write_all(ctx, self.sink, row, []))
            self.acked += row

        @rule(n=st.integers(0, 7))
        def write_batch(self, n: int) -> None:
            rows = self.take(n)
            self.run(write_all(ctx, self.sink, rows, [n]))
            self.acked += rows

        @precondition(lambda self: arrow)
        @rule(n=st.integers(0, 7), offset=st.integers(0, 3))
        def write_arrow_slice(self, n: int, offset: int) -> None:
            # The parent's first `offset` rows reuse already-acknowledged ids, so a sink
            # that ignores the slice offset shows up as duplicates.
            parent = ctx.batch(n + offset, start=self.next_id - offset)
            piece = parent.slice(offset, n)
            self.next_id += n
            self.run(write_arrow(ctx, self.sink, piece))
            self.acked += piece.to_pylist()

        @rule()
        def flush(self) -> None:
            self.run(self.sink.flush())
            if readable:
                self.check("after flush() (sink open)")

        @precondition(lambda self: reopen)
        @rule()
        def close_and_reopen(self) -> None:
            self.run(self.sink.close())
            self.check("after close()")
            self.sink = ctx.harness.build_append(self.ns)
            self.ns.components.append(self.sink)
            self.run(self.sink.open())

        def teardown(self) -> None:
            try:
                if self.sink is not None:
                    self.run(self.sink.close())
                    self.check("at the end (after close())")
            finally:
                self.runner.close()
                self.scope.__exit__(None, None, None)

    return SinkMachine


@sink_check(
    "SNK-PBT-03",
    "stateful: write / flush / close-and-reopen keep the read-back equal to what was acknowledged",
    requires=("persists",),
    hypothesis=True,
)
def check_stateful_sink(ctx: SinkContext) -> None:
    """contract §4 and §7: over any sequence of ``write``, ``write_batch``, ``write_arrow_batch``
    (Arrow-native sinks; slices included), ``flush`` and close-then-reopen-in-append-mode
    (when the harness can reopen), the read-back after each flush (if readable while
    open) and each close equals every record acknowledged so far — no loss, no
    duplicate, no phantom."""
    _require_read_back(ctx)
    machine = make_sink_machine(ctx)
    ctx.profile.apply_seed(machine)
    run_state_machine_as_test(machine, settings=ctx.profile.hypothesis_settings())
