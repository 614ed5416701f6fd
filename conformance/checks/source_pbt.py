"""Source property and stateful checks (SRC-PBT-*): a state machine over read / checkpoint /
restart-from-checkpoint, and generated data sets read back and resumed exactly."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance._agora import DataPlane
from conformance.catalogue import source_check
from conformance.checks._context import SourceContext
from conformance.checks._source_io import checkpoint_for, read_source, rows_of
from conformance.data import describe_sequence_diff
from conformance.harness import Namespace
from conformance.strategies import row_lists

__all__ = [
    "check_generated_data_read_exactly",
    "check_generated_data_resumes_exactly",
    "check_stateful_source",
    "make_source_machine",
]


def make_source_machine(
    ctx: SourceContext, ns: Namespace, reference: list[Any]
) -> type[RuleBasedStateMachine]:
    """A state machine reading one data set through successive source instances.

    Model: the reference full read and the position the current instance started from.
    Invariant (after every unit): the records emitted since the last (re)start equal the
    reference slice starting at that position. Checkpoints are collected with the
    position they were taken at; restarting from one starts a fresh instance there.
    """
    rows_plane = ctx.plane() is DataPlane.PYTHON_ROWS

    class SourceMachine(RuleBasedStateMachine):
        checkpoints = Bundle("checkpoints")

        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.source: Any = None
            self.stream: Any = None
            self.start = 0
            self.seen: list[Any] = []
            self.ended = False

        def restart(self, value: Any, position: int) -> None:
            self.stop()
            src = ctx.build(ns)
            self.runner.run(
                src.prepare_resume(None if value is None else checkpoint_for(src, value))
            )
            self.runner.run(src.open())
            self.source = src
            self.stream = src.stream() if rows_plane else src.stream_batches()
            self.start, self.seen, self.ended = position, [], False
            note(f"(re)started at record {position} from checkpoint {value!r}")

        def stop(self) -> None:
            if self.stream is not None and hasattr(self.stream, "aclose"):
                self.runner.run(self.stream.aclose())
            if self.source is not None:
                self.runner.run(self.source.close())
            self.source = self.stream = None

        @initialize()
        def first_run(self) -> None:
            self.restart(None, 0)

        @precondition(lambda self: not self.ended)
        @rule()
        def read_unit(self) -> None:
            try:
                item = self.runner.run(self.stream.__anext__())
            except StopAsyncIteration:
                self.ended = True
                expected = reference[self.start :]
            else:
                self.seen += ctx.canon(rows_of(item))
                expected = reference[self.start : self.start + len(self.seen)]
            diff = describe_sequence_diff(expected, self.seen)
            assert diff is None, (
                f"{ctx.name}: after a (re)start at record {self.start}, the records emitted "
                f"differ from the reference: {diff}"
            )

        @rule(target=checkpoints)
        def take_checkpoint(self) -> tuple[Any, int]:
            value = self.source.current_checkpoint()
            position = self.start + len(self.seen)
            if value is None and position > 0:
                raise AssertionError(
                    f"{ctx.name}: current_checkpoint() is None after {position} record(s)"
                )
            return value, position

        @rule(checkpoint=checkpoints)
        def restart_from(self, checkpoint: tuple[Any, int]) -> None:
            self.restart(*checkpoint)

        def teardown(self) -> None:
            try:
                self.stop()
            finally:
                self.runner.close()

    return SourceMachine


@source_check(
    "SRC-PBT-01",
    "stateful: read / checkpoint / restart-from-checkpoint stays exact",
    requires=("checkpoint",),
    hypothesis=True,
)
def check_stateful_source(ctx: SourceContext) -> None:
    """contract §3: over any interleaving of reading units, taking checkpoints and restarting a
    fresh instance from any earlier checkpoint (not only the latest), every instance
    emits exactly the reference records from its checkpoint on."""
    ns = ctx.seeded()
    reference = asyncio.run(read_source(ctx, ns, observe=False)).rows
    machine = make_source_machine(ctx, ns, reference)
    ctx.profile.apply_seed(machine)
    run_state_machine_as_test(machine, settings=ctx.profile.hypothesis_settings())


@source_check(
    "SRC-PBT-02",
    "any generated data set is read back exactly as seeded",
    hypothesis=True,
)
def check_generated_data_read_exactly(ctx: SourceContext) -> None:
    """contract §3: for generated input (every declared value kind, nulls, empty input), the
    source emits each record once, in order, values intact (harness canonical form)."""
    ctx.require_seed_data()

    @given(rows=row_lists(ctx.features, max_rows=25))
    def prop(rows: list[dict[str, Any]]) -> None:
        with ctx.scope():
            ns = ctx.seeded(rows, label="pbt")
            read = asyncio.run(read_source(ctx, ns, observe=False))
            diff = describe_sequence_diff(ctx.canon(rows), read.rows)
            assert diff is None, f"{ctx.name} over generated data: {diff}"

    ctx.profile.apply_seed(ctx.profile.hypothesis_settings()(prop))()


@source_check(
    "SRC-PBT-03",
    "any generated data set resumes exactly from any checkpoint",
    requires=("checkpoint",),
    hypothesis=True,
)
def check_generated_data_resumes_exactly(ctx: SourceContext) -> None:
    """contract §3: for generated input, resuming a fresh instance from the checkpoint after
    any unit emits exactly the records after that unit."""
    ctx.require_seed_data()

    @given(data=st.data(), rows=row_lists(ctx.features, max_rows=25))
    def prop(data: Any, rows: list[dict[str, Any]]) -> None:
        with ctx.scope():
            ns = ctx.seeded(rows, label="pbtresume")
            full = asyncio.run(read_source(ctx, ns))
            if not full.units:
                return
            k = data.draw(st.integers(0, len(full.units) - 1), label="resume after unit")
            done = sum(len(u.rows) for u in full.units[: k + 1])
            resumed = asyncio.run(
                read_source(ctx, ns, resume=full.units[k].checkpoint, observe=False)
            )
            diff = describe_sequence_diff(full.rows[done:], resumed.rows)
            assert diff is None, (
                f"{ctx.name}: resumed after unit {k} ({full.units[k].checkpoint!r}): {diff}"
            )

    ctx.profile.apply_seed(ctx.profile.hypothesis_settings()(prop))()
