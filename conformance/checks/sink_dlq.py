"""Dead-letter sink checks (SNK-DLQ-*): captured records are durable after flush, content
JSON cannot hold is stored flagged (never refused), files are owner-only, and an
acknowledged capture is never lost — whatever the lifecycle state or the caller's list."""

from __future__ import annotations

import base64

import json
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from conformance._agora import DLQRecord, DLQStage
from conformance.catalogue import NotVerifiable, Unsupported, sink_check
from conformance.checks._context import SinkContext
from conformance.harness import DLQSinkHarness, Namespace

__all__ = [
    "FIELDS",
    "HUGE_REPR",
    "check_acknowledged_captures_persist",
    "check_captures_durable_after_flush",
    "check_dlq_files_owner_only",
    "check_unserialisable_content_flagged",
    "dlq_records",
]

#: The DLQRecord fields a DLQ sink must give back as captured (``round_trippable`` is
#: checked on its own: it is the sink's verdict on the content).
FIELDS = (
    "pipeline_id",
    "run_id",
    "stage",
    "error_type",
    "error_message",
    "source",
    "checkpoint",
    "record",
    "processed_record",
    "middleware",
    "sink",
    "created_at",
)
#: Length of the repr of the oversized probe value: far above any sensible storage cap.
HUGE_REPR = 4 * 1024 * 1024
_FLAG = "__agora_unserialisable__"
_BYTES_TAG = "__agora_bytes_b64__"
_BYTES_PROBE = b"\xff\x00raw"
_SURROGATE = "a\ud800b"


def dlq_records(n: int, *, start: int = 0, run_id: str = "run-1") -> list[Any]:
    """``n`` ordinary DLQRecords (JSON values only), distinct by ``record["id"]``."""
    return [
        DLQRecord(
            pipeline_id="conformance",
            run_id=run_id,
            stage=DLQStage.SINK_WRITE,
            error_type="ValueError",
            error_message=f"record {i} refused — ünïcode ✓",
            source="conformance-source",
            checkpoint={"line": i},
            record={"id": i, "name": f"row-{i}", "score": i / 4, "tags": ["a", None]},
            processed_record={"id": i, "out": True},
            sink="conformance-sink",
            created_at=f"2026-12-05T10:00:{i % 60:02d}+00:00",
        )
        for i in range(start, start + n)
    ]


def _harness(ctx: SinkContext) -> DLQSinkHarness:
    harness = ctx.harness
    assert isinstance(harness, DLQSinkHarness)
    return harness


def _read(ctx: SinkContext, ns: Namespace) -> list[Mapping[str, Any]]:
    harness = _harness(ctx)
    if not harness.has_read_back:
        raise NotVerifiable(
            f"no independent read-back for the DLQ sink {ctx.name}: supply a DLQSinkHarness "
            f"with read_back(ns) returning the stored records as DLQRecord.to_dict() dicts",
            hook="read_back()",
        )
    return list(harness.read_back(ns))


def _key(stored: Mapping[str, Any]) -> str:
    return json.dumps([stored.get(f) for f in FIELDS], sort_keys=True, default=repr)


def _expected(record: Any) -> str:
    return _key({f: getattr(record, f) for f in FIELDS})


def _assert_holds(
    ctx: SinkContext, stored: Sequence[Mapping[str, Any]], records: Sequence[Any], what: str
) -> None:
    """Every one of ``records`` is among ``stored``, field for field, exactly once."""
    have = [_key(s) for s in stored]
    missing = [r.record for r in records if _expected(r) not in have]
    assert not missing, (
        f"{ctx.name}: {what}: {len(missing)} captured record(s) missing or altered in what "
        f"the DLQ holds (e.g. record {missing[0]!r}); read back {len(stored)} record(s)"
    )
    extra = len(stored) - len(records)
    assert extra == 0, (
        f"{ctx.name}: {what}: the DLQ holds {len(stored)} record(s) for {len(records)} "
        f"captured — duplicates or phantoms"
    )


@sink_check(
    "SNK-DLQ-01",
    "captured records are durable after flush() and read back as captured",
    requires=("dlq",),
)
async def check_captures_durable_after_flush(ctx: SinkContext) -> None:
    """contract §7 and §8: the runtime flushes the DLQ before it saves a checkpoint past a
    dead-lettered record, so after ``flush()`` (sink still open) every captured record is
    stored, field for field; ``close()`` keeps it, and the next run (open again) adds to
    the DLQ instead of starting it over."""
    records = dlq_records(9)
    ns = ctx.namespace("dlq-durable")
    sink = ctx.build(ns)
    await sink.open()
    for record in records[:3]:
        await sink.write(record)
    await sink.write_batch(records[3:6])
    await sink.flush()
    if _harness(ctx).readable_before_close:
        _assert_holds(ctx, _read(ctx, ns), records[:6], "after flush() (sink still open)")
    await sink.close()
    _assert_holds(ctx, _read(ctx, ns), records[:6], "after close()")
    await sink.open()  # the next run of the same bound pipeline
    await sink.write_batch(records[6:])
    await sink.close()
    _assert_holds(ctx, _read(ctx, ns), records, "after a second run on the same DLQ")
    flags = [s.get("round_trippable") for s in _read(ctx, ns)]
    assert all(flag is True for flag in flags), (
        f"{ctx.name}: records of plain JSON values were stored with round_trippable={flags}; "
        f"only content JSON cannot hold is flagged"
    )


class _Opaque:
    """A value JSON cannot hold, with a repr of a chosen length."""

    def __init__(self, size: int = 0) -> None:
        self.size = size

    def __repr__(self) -> str:
        return "<opaque " + "x" * self.size + ">"


def _captured(record: Any, content: Any, i: int) -> Any:
    return record.with_fields(record={"id": i, "payload": content})


@sink_check(
    "SNK-DLQ-02",
    "content JSON cannot hold is captured and flagged, never refused",
    requires=("dlq",),
)
async def check_unserialisable_content_flagged(ctx: SinkContext) -> None:
    """contract §7 and §11: capture never fails on content — the DLQ is where bad records go.
    A lone surrogate is stored (as a JSON ``\\ud800`` escape) and round-trips; bytes and
    other values JSON cannot hold are stored as a flagged fallback ``{"__agora_
    unserialisable__": true, "type": …, "repr": …}`` with ``round_trippable`` False (bytes
    may instead be stored losslessly as ``{"__agora_bytes_b64__": …}``, round-trippable); an
    oversized value is capped and flagged ``"truncated": true``."""
    base = dlq_records(1)[0]
    probes = [
        ("a lone surrogate", _captured(base, _SURROGATE, 1)),
        ("bytes", _captured(base, _BYTES_PROBE, 2)),
        ("an object JSON cannot hold", _captured(base, _Opaque(), 3)),
        (f"a value whose repr is {HUGE_REPR} characters", _captured(base, _Opaque(HUGE_REPR), 4)),
    ]
    ns = ctx.namespace("dlq-content")
    sink = ctx.build(ns)
    await sink.open()
    problems: list[str] = []
    written: dict[int, str] = {}
    for i, (what, record) in enumerate(probes, start=1):
        try:
            await sink.write(record)
        except Exception as exc:
            problems.append(
                f"capturing a record holding {what} raised {type(exc).__name__}: "
                f"{str(exc)[:160]} — store it (flagged), never refuse it"
            )
        else:
            written[i] = what
    await sink.close()
    stored = {
        s["record"].get("id"): s for s in _read(ctx, ns) if _is_map(s.get("record"))
    }
    for i, what in written.items():
        if i not in stored:
            problems.append(f"the record holding {what} was accepted but is not stored")
        else:
            problems += _content_problems(i, what, stored[i])
    assert not problems, f"{ctx.name}: " + "; ".join(problems)


def _content_problems(i: int, what: str, stored: Mapping[str, Any]) -> list[str]:
    """What is wrong with how probe ``i`` (see SNK-DLQ-02) was stored."""
    payload, flag = stored["record"].get("payload"), stored.get("round_trippable")
    if i == 1:
        if payload == _SURROGATE and flag is True:
            return []
        return [
            f"{what} came back as {payload!r} (round_trippable={flag!r}); store it as a JSON "
            f"\\ud800 escape so it round-trips"
        ]
    kind = "bytes" if i == 2 else "_Opaque"
    found: list[str] = []
    if i == 2 and _is_lossless_bytes(payload, _BYTES_PROBE):
        # A lossless tagged form is better than a fallback: it round-trips.
        return [] if flag is True else [
            f"{what} was stored losslessly but with round_trippable={flag!r}; it must be True"]
    if not (_is_map(payload) and payload.get(_FLAG) is True):
        return [
            f"{what} was stored as {str(payload)[:80]!r}; store the flagged fallback "
            f'{{"{_FLAG}": true, "type": …, "repr": …}}'
        ]
    if payload.get("type") != kind or not isinstance(payload.get("repr"), str):
        found.append(
            f"the fallback for {what} names type {payload.get('type')!r}; it must name "
            f"{kind!r} and keep the repr"
        )
    if flag is not False:
        found.append(f"{what} was stored with round_trippable={flag!r}; it must be False")
    text = payload.get("repr")
    if i == 4 and isinstance(text, str) and not (
        len(text) < HUGE_REPR and payload.get("truncated") is True
    ):
        found.append(
            f"a {HUGE_REPR}-character repr was stored with {len(text)} characters and "
            f'truncated={payload.get("truncated")!r}; cap it and flag "truncated": true'
        )
    return found


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_lossless_bytes(payload: Any, original: bytes) -> bool:
    """True for Agora's lossless bytes tag ``{"__agora_bytes_b64__": <base64>}`` holding
    exactly ``original``."""
    if not (_is_map(payload) and set(payload) == {_BYTES_TAG}):
        return False
    try:
        return base64.b64decode(payload[_BYTES_TAG], validate=True) == original
    except (ValueError, TypeError):
        return False


@sink_check("SNK-DLQ-03", "DLQ files are owner-only (0600)", requires=("dlq",))
async def check_dlq_files_owner_only(ctx: SinkContext) -> None:
    """contract §8: dead-lettered records hold production data (often the very values that
    failed), so the DLQ files a sink creates are readable and writable by their owner
    only — on creation, not after a later chmod."""
    ns = ctx.namespace("dlq-perms")
    sink = ctx.build(ns)
    await sink.open()
    await sink.write_batch(dlq_records(2))
    await sink.flush()
    files = _harness(ctx).files(ns)
    await sink.close()
    files = sorted(set(files) | set(_harness(ctx).files(ns)))
    if not files:
        raise Unsupported(f"the harness lists no file for {ctx.name}: its medium is not a file")
    loose = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p in files
        if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077
    }
    assert not loose, (
        f"{ctx.name}: DLQ file(s) readable or writable by others: {loose}; create them "
        f"with mode 0600 (os.open(path, flags, 0o600))"
    )


async def _accepts(call: Callable[[], Awaitable[Any]]) -> bool:
    try:
        await call()
    except Exception:
        return False
    return True


@sink_check(
    "SNK-DLQ-04",
    "an acknowledged capture persists, whatever the lifecycle state or the caller's list",
    requires=("dlq",),
)
async def check_acknowledged_captures_persist(ctx: SinkContext) -> None:
    """contract §4 and §11: a capture that returns without error is persisted — before
    ``open()`` and after ``close()`` a DLQ sink should raise, and if it accepts instead,
    what it accepted must be kept; and a caller reusing its list after ``write_batch``
    returns changes nothing of what is stored."""
    records = dlq_records(10)
    ns = ctx.namespace("dlq-ack")
    sink = ctx.build(ns)
    acknowledged: list[Any] = []
    if await _accepts(lambda: sink.write(records[0])):
        acknowledged.append(records[0])
    await sink.open()
    batch = list(records[1:4])
    await sink.write_batch(batch)
    acknowledged += records[1:4]
    batch.clear()  # the caller reuses its list
    batch.extend(dlq_records(3, start=100))
    await sink.write(records[4])
    acknowledged.append(records[4])
    await sink.close()
    late = list(records[5:7])
    if await _accepts(lambda: sink.write_batch(late)):
        acknowledged += records[5:7]
    for finish in (sink.flush, sink.close):
        await _accepts(finish)
    _assert_holds(ctx, _read(ctx, ns), acknowledged, "acknowledged captures")
