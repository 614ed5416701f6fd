"""Source checkpoint checks (SRC-CKPT-*): JSON checkpoints, exact resume from every
checkpoint in a fresh instance (and in a fresh process), chained resume, no observer
effect, and honest refusal of checkpoints a source cannot use."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from typing import Any

from conformance._agora import Checkpoint, CheckpointError, DataPlane
from conformance.catalogue import NotVerifiable, source_check
from conformance.checks._context import SourceContext
from conformance.checks._source_io import checkpoint_for, read_source, rows_of
from conformance.data import describe_sequence_diff

__all__ = [
    "check_chained_resume",
    "check_checkpoints_are_json",
    "check_final_checkpoint_resumes_to_nothing",
    "check_foreign_checkpoint_refused",
    "check_initial_checkpoint_resumes_fully",
    "check_no_observer_effect",
    "check_other_input_checkpoint_refused",
    "check_resume_every_checkpoint",
    "check_resume_in_fresh_process",
    "check_uncheckpointable_refuses_checkpoint",
    "sample_positions",
]


def sample_positions(count: int, samples: int | None) -> list[int]:
    """Indices into ``count`` checkpoints to try: all of them, or ``samples`` spread from
    the middle outwards (the middle of a stream is where resume bugs live)."""
    if samples is None or samples >= count:
        return list(range(count))
    if samples <= 0 or count == 0:
        return []
    order = [count // 2, 0, count - 1, *range(count)]
    return sorted(list(dict.fromkeys(order))[:samples])


@source_check(
    "SRC-CKPT-01",
    "every checkpoint is a JSON value that survives a round trip",
    requires=("checkpoint",),
)
async def check_checkpoints_are_json(ctx: SourceContext) -> None:
    """contract §3: ``current_checkpoint()`` returns a JSON value — the runtime stores it as
    JSON and hands back what JSON gives back. After the first unit it is not None."""
    read = await read_source(ctx, ctx.seeded())
    for i, unit in enumerate(read.units):
        value = unit.checkpoint
        assert value is not None, (
            f"{ctx.name}: current_checkpoint() is None after unit {i}; after a unit it must "
            f"name the position after it"
        )
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"{ctx.name}: checkpoint after unit {i} ({value!r}, a {type(value).__name__}) is "
                f"not JSON-serialisable: {exc}"
            ) from exc
        back = json.loads(text)
        assert back == value and type(back) is type(value), (
            f"{ctx.name}: checkpoint after unit {i} does not survive JSON: {value!r} came back "
            f"as {back!r}"
        )


@source_check(
    "SRC-CKPT-02", "resume from every checkpoint emits exactly the rest", requires=("checkpoint",)
)
async def check_resume_every_checkpoint(ctx: SourceContext) -> None:
    """contract §3: resume is exact — a fresh instance resumed from the checkpoint taken after
    unit k emits exactly the records after unit k (no loss, no repeat), for every k."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns)
    done = 0
    for k, unit in enumerate(full.units):
        done += len(unit.rows)
        resumed = await read_source(ctx, ns, resume=unit.checkpoint, observe=False)
        diff = describe_sequence_diff(full.rows[done:], resumed.rows)
        assert diff is None, (
            f"{ctx.name}: resumed from the checkpoint after unit {k} ({unit.checkpoint!r}, "
            f"{done} record(s) in): {diff}"
        )


@source_check(
    "SRC-CKPT-03", "resume from the final checkpoint emits nothing", requires=("checkpoint",)
)
async def check_final_checkpoint_resumes_to_nothing(ctx: SourceContext) -> None:
    """contract §3: the checkpoint after the last unit names the end — a resumed run of a
    finished source emits no record."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns)
    resumed = await read_source(ctx, ns, resume=full.final_checkpoint, observe=False)
    assert not resumed.rows, (
        f"{ctx.name}: resumed from the final checkpoint {full.final_checkpoint!r} it emitted "
        f"{len(resumed.rows)} record(s) again"
    )


@source_check(
    "SRC-CKPT-04",
    "the checkpoint before the first unit is None or resumes fully",
    requires=("checkpoint",),
)
async def check_initial_checkpoint_resumes_fully(ctx: SourceContext) -> None:
    """contract §3: before the first unit ``current_checkpoint()`` may return None or the
    start position; a start position must resume to the full stream."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns)
    if full.initial_checkpoint is None:
        return
    resumed = await read_source(ctx, ns, resume=full.initial_checkpoint, observe=False)
    diff = describe_sequence_diff(full.rows, resumed.rows)
    assert diff is None, (
        f"{ctx.name}: resumed from the initial checkpoint {full.initial_checkpoint!r}: {diff}"
    )


@source_check(
    "SRC-CKPT-05", "a checkpoint resumes exactly in a fresh process", requires=("checkpoint",)
)
async def check_resume_in_fresh_process(ctx: SourceContext) -> None:
    """contract §3 and §7 (crash safety): a checkpoint is all a restarted process has — resumed
    in a new interpreter (a subprocess building the source through the same harness), it
    emits exactly the records after it. Catches positions kept in process memory."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns)
    picks = sample_positions(len(full.units), ctx.profile.subprocess_samples)
    values = [full.units[k].checkpoint for k in picks]
    try:
        payload = pickle.dumps(
            {"harness": ctx.harness, "ns": ns, "label": ctx.name, "checkpoints": values}
        )
    except Exception as exc:
        raise NotVerifiable(
            f"the harness for {ctx.name} cannot be pickled for a fresh process ({exc}); define "
            f"it at module level",
            hook="a picklable (module-level) harness",
        ) from exc
    results = _run_child(ctx, payload)
    starts = [sum(len(u.rows) for u in full.units[: k + 1]) for k in picks]
    assert len(results) == len(picks), (
        f"{ctx.name}: the resume child returned {len(results)} results"
    )
    for k, start, outcome in zip(picks, starts, results, strict=True):
        if isinstance(outcome, str):
            raise AssertionError(
                f"{ctx.name}: in a fresh process, resuming from the checkpoint after unit {k} "
                f"({full.units[k].checkpoint!r}) failed: {outcome}"
            )
        diff = describe_sequence_diff(full.rows[start:], outcome)
        assert diff is None, (
            f"{ctx.name}: in a fresh process, resumed from the checkpoint after unit {k} "
            f"({full.units[k].checkpoint!r}): {diff}"
        )


def _run_child(ctx: SourceContext, payload: bytes) -> list[Any]:
    env = dict(os.environ)
    paths = [p for p in sys.path if p] + [os.getcwd()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    proc = subprocess.run(
        [sys.executable, "-m", "conformance._resume_child"],
        input=payload,
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise AssertionError(
            f"{ctx.name}: the fresh-process resume child exited with {proc.returncode}: "
            + " | ".join(tail)
        )
    emitted: list[Any] = pickle.loads(proc.stdout)  # noqa: S301 - our own child's output
    return emitted


@source_check(
    "SRC-CKPT-06", "taking checkpoints does not change the stream", requires=("checkpoint",)
)
async def check_no_observer_effect(ctx: SourceContext) -> None:
    """contract §3 and §7: the runtime asks for checkpoints when it pleases (every
    ``checkpoint_every`` records); asking — even repeatedly — must not move the source."""
    ns = ctx.seeded()
    unobserved = await read_source(ctx, ns, observe=False)
    src = ctx.build(ns)
    await src.prepare_resume(None)
    await src.open()
    rows: list[Any] = []
    stream = src.stream() if ctx.plane() is DataPlane.PYTHON_ROWS else src.stream_batches()
    async for item in stream:
        first = src.current_checkpoint()
        second = src.current_checkpoint()
        assert first == second, (
            f"{ctx.name}: two current_checkpoint() calls in a row differ: {first!r} → {second!r}"
        )
        rows.extend(ctx.canon(rows_of(item)))
    await src.close()
    diff = describe_sequence_diff(unobserved.rows, rows)
    assert diff is None, f"{ctx.name}: reading with checkpoints observed changed the stream: {diff}"


async def _refuses(ctx: SourceContext, src: Any, checkpoint: Checkpoint) -> str | None:
    """Hand ``checkpoint`` to ``src`` and read one unit: None if it raised CheckpointError
    (at prepare_resume, open or the first read), else what it did instead."""
    emitted = 0
    try:
        await src.prepare_resume(checkpoint)
        await src.open()
        stream = src.stream() if ctx.plane() is DataPlane.PYTHON_ROWS else src.stream_batches()
        async for item in stream:
            emitted += len(rows_of(item))
            break
    except CheckpointError:
        return None
    except Exception as exc:
        return (
            f"raised {type(exc).__name__}: {exc}; raise agora.CheckpointError so the runtime "
            f"reports it as a checkpoint problem (fail-closed)"
        )
    finally:
        await src.close()
    return f"accepted it and read on ({emitted} record(s) in its first unit)"


@source_check(
    "SRC-CKPT-07",
    "a foreign checkpoint is refused with CheckpointError",
    requires=("checkpoint",),
)
async def check_foreign_checkpoint_refused(ctx: SourceContext) -> None:
    """contract §7 and §11: a corrupt or foreign checkpoint — a value this source never
    writes, as another kind of source or another pipeline would store — is a
    ``CheckpointError`` at start (fail-closed), never a silent restart from scratch or a
    guess. (A checkpoint stored under another source name never reaches the source: the
    runtime refuses it.)"""
    ns = ctx.seeded()
    foreigners = (
        {"conformance-foreign": [1, "x"]},
        "conformance-foreign-token",
        [{"offset": 3}],
    )
    for value in foreigners:
        src = ctx.build(ns)
        problem = await _refuses(
            ctx, src, Checkpoint("conformance", "conformance", src.source_name, value)
        )
        assert problem is None, f"{ctx.name}: given the foreign checkpoint {value!r}, it {problem}"


@source_check(
    "SRC-CKPT-10",
    "a checkpoint taken over another input is refused with CheckpointError",
    requires=("checkpoint", "input-identity"),
)
async def check_other_input_checkpoint_refused(ctx: SourceContext) -> None:
    """contract §3 and §11: a source refuses a foreign checkpoint — including one taken by the
    same kind of source over another input (another file, another table) under the same
    source name. Resuming it would skip records of this input, or quietly restart from
    the beginning and duplicate everything; both lose the guarantee. Raise
    ``CheckpointError`` instead (e.g. keep a fingerprint of the input in the checkpoint)."""
    ctx.require_seed_data()
    mine = ctx.seeded()
    # Two other inputs: different data of another length, and a near-twin of this input
    # (one id changed, same size and shape) whose positions all look valid here — only a
    # source that knows which input a checkpoint belongs to can tell.
    twin = ctx.rows(ctx.STANDARD_ROWS)
    twin[0]["id"] = 9
    others = {
        "another input": ctx.seeded(ctx.rows(31, start=500), label="other-input"),
        "a near-identical input": ctx.seeded(twin, label="twin-input"),
    }
    for label, other in others.items():
        theirs = await read_source(ctx, other)
        if not theirs.units:
            raise AssertionError(f"{ctx.name}: read nothing from seeded data ({label})")
        picks = {"after its first unit": theirs.units[0].checkpoint}
        if len(theirs.units) > 2:
            picks["mid-stream"] = theirs.units[len(theirs.units) // 2].checkpoint
        foreign_name = ctx.build(other).source_name
        for where, value in picks.items():
            src = ctx.build(mine)
            if src.source_name != foreign_name:
                continue  # different names: the runtime refuses it before the source
            problem = await _refuses(ctx, src, checkpoint_for(src, value))
            assert problem is None, (
                f"{ctx.name}: given a checkpoint taken {where} of {label} ({value!r}), it "
                f"{problem} — a checkpoint over another input must raise CheckpointError"
            )


@source_check(
    "SRC-CKPT-08", "a source without checkpoints refuses one", requires=("no-checkpoint",)
)
async def check_uncheckpointable_refuses_checkpoint(ctx: SourceContext) -> None:
    """contract §3 and §7: a source with ``supports_checkpoint = False`` given a stored
    checkpoint must raise ``CheckpointError`` — silently re-reading from the start would
    duplicate everything a previous run delivered."""
    src = ctx.build(ctx.seeded())
    try:
        await src.prepare_resume(Checkpoint("conformance", "conformance", src.source_name, 3))
    except CheckpointError:
        return
    raise AssertionError(
        f"{ctx.name} does not support checkpoints but accepted one in prepare_resume(); raise "
        f"CheckpointError (the BaseSource default does)"
    )


@source_check(
    "SRC-CKPT-09",
    "checkpoints taken after a resume resume exactly (chained)",
    requires=("checkpoint",),
)
async def check_chained_resume(ctx: SourceContext) -> None:
    """contract §3: a resumed run checkpoints too, and a crash can interrupt it — so the
    checkpoints a resumed instance reports must themselves resume exactly."""
    ns = ctx.seeded()
    full = await read_source(ctx, ns)
    if len(full.units) < 3:
        return
    k = len(full.units) // 3
    start = sum(len(u.rows) for u in full.units[: k + 1])
    second = await read_source(ctx, ns, resume=full.units[k].checkpoint, max_units=max(1, k))
    taken = sum(len(u.rows) for u in second.units)
    third = await read_source(ctx, ns, resume=second.final_checkpoint, observe=False)
    diff = describe_sequence_diff(full.rows[start + taken :], third.rows)
    assert diff is None, (
        f"{ctx.name}: resumed after unit {k}, read {len(second.units)} more unit(s), then "
        f"resumed from that run's checkpoint {second.final_checkpoint!r}: {diff}"
    )
