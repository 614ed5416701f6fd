"""The members of a ``SinkFanOut``: distinct names, per-record outcomes, and one member's
write of a batch on the plane it takes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agora.errors import ContractError
from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec
from agora.records import WriteResult
from agora.sinks.base import BaseSink, DuckTypedSink, SinkState

__all__ = ["FanOutResult", "NamedMember", "parallel_write_hints", "write_member_rows"]


@dataclass(frozen=True, slots=True)
class FanOutResult:
    """Outcome of one record written through a fan-out used as a writer.

    ``written``: at least one sink wrote it. ``errors``: each failing sink's exception,
    in sink order (empty when every sink wrote it)."""

    written: bool
    errors: tuple[Exception, ...] = ()

    @property
    def ok(self) -> bool:
        """Every sink wrote the record."""
        return self.written and not self.errors

    @property
    def partial(self) -> bool:
        """Some sink wrote the record and another rejected it."""
        return self.written and bool(self.errors)


class NamedMember(BaseSink[Any]):
    """A fan-out member shown under the distinct name the fan-out gave it (``collect#2``
    for the second sink named ``collect``): every call goes to the sink itself, which is
    left unchanged; dead letters, counters and ``explain()`` use the distinct name."""

    def __init__(self, inner: BaseSink[Any], name: str) -> None:
        self.inner = inner
        self.sink_name = name

    @property
    def state(self) -> SinkState:
        return self.inner.state

    def data_plane_spec(self) -> SinkDataPlaneSpec:
        spec = self.inner.data_plane_spec()
        return SinkDataPlaneSpec(self.sink_name, spec.accepted_planes, spec.native_planes)

    def sink_capabilities(self) -> SinkCapabilities | None:
        return self.inner.sink_capabilities()

    @property
    def runtime_metrics(self) -> Mapping[str, int | float]:
        return self.inner.runtime_metrics

    def resume_output(self) -> None:
        self.inner.resume_output()

    async def open(self) -> None:
        await self.inner.open()

    async def write(self, record: Any) -> None:
        await self.inner.write(record)

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        return await self.inner.write_batch(records)

    async def write_arrow_batch(self, batch: Any) -> list[WriteResult] | None:
        return await self.inner.write_arrow_batch(batch)

    async def flush(self) -> None:
        await self.inner.flush()

    async def close(self) -> None:
        await self.inner.close()


def unwrapped(sink: Any) -> Any:
    """The object a member adapts (itself when it adapts nothing)."""
    while isinstance(sink, (NamedMember, DuckTypedSink)):
        sink = sink.inner
    return sink


def parallel_write_hints(obj: Any) -> tuple[bool, bool]:
    """``(parallel_writes_safe, ordered_writes_required)`` of a sink or duck-typed sink
    object: from its ``sink_capabilities()`` declaration when it returns one, else from
    attributes of those names (default: not safe, order required)."""
    obj = unwrapped(obj)
    declare = getattr(obj, "sink_capabilities", None)
    caps = declare() if callable(declare) else None
    if isinstance(caps, SinkCapabilities):
        return bool(caps.parallel_writes_safe), bool(caps.ordered_writes_required)
    return (bool(getattr(obj, "parallel_writes_safe", False)),
            bool(getattr(obj, "ordered_writes_required", True)))


async def write_member_rows(member: BaseSink[Any], spec: SinkDataPlaneSpec,
                            rows: Sequence[Any], *,
                            parallel: int) -> list[Exception | None]:
    """One member's write of ``rows``: each row's error, or None where it was written.

    A member that takes Python batches natively gets one ``write_batch`` call (raising
    fails every row with that error); any other member gets one ``write`` per row, the
    next row written even when one fails. ``parallel > 1`` writes up to that many rows at
    once (the caller allows it only for a sink declared parallel-safe and unordered)."""
    n = len(rows)
    if DataPlane.PYTHON_BATCHES in spec.native_planes:
        try:
            results = await member.write_batch(list(rows))
        except Exception as exc:
            return [exc] * n
        return per_row_errors(member, "write_batch", results, n)
    if parallel > 1 and n > 1:
        gate = asyncio.Semaphore(parallel)

        async def one(row: Any) -> Exception | None:
            async with gate:
                try:
                    await member.write(row)
                except Exception as exc:
                    return exc
                return None

        return list(await asyncio.gather(*(one(row) for row in rows)))
    errors: list[Exception | None] = []
    for row in rows:
        try:
            await member.write(row)
        except Exception as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def per_row_errors(member: BaseSink[Any], method: str, results: Any,
                   n: int) -> list[Exception | None]:
    """A batch call's return value as one error-or-None per row. A value that is neither
    None nor one ``WriteResult`` per row fails every row with a ``ContractError``."""
    if results is None:
        return [None] * n
    if not isinstance(results, list) or len(results) != n or not all(
            isinstance(r, WriteResult) for r in results):
        got = f"{len(results)} items" if isinstance(results, list) else type(results).__name__
        error = ContractError(
            f"sink {member.sink_name!r} returned {got} from {method}() for {n} records; it "
            f"must return None or exactly one WriteResult per input record, in order")
        return [error] * n
    out: list[Exception | None] = []
    for i, res in enumerate(results):
        if res.written:
            out.append(None)
        else:
            out.append(res.error or ContractError(
                f"sink {member.sink_name!r} reported record {i} not written without an "
                f"error; a WriteResult that is not written must carry the exception"))
    return out
