"""Delivering a unit's surviving records to the writer (one sink, a fan-out or a
router), each sink on its planned plane, and turning every per-record outcome into
counts and ``Failure`` entries for the committer."""

from __future__ import annotations

from typing import Any

from agora.errors import ContractError
from agora.planes import DataPlane
from agora.records import WriteResult
from agora.runtime.plan import Plan, SinkPlan
from agora.runtime.units import GONE, Failure, Unit
from agora.sinks.router import SinkRouter

__all__ = ["Writer"]


class Writer:
    """Writes units; never raises for a sink failure (those become ``Failure`` entries)."""

    def __init__(self, plan: Plan, router: SinkRouter | None) -> None:
        self.plan = plan
        self.router = router
        self.sink_plans = plan.sinks
        self.unrouted = 0
        self.per_sink: dict[str, dict[str, int]] = {
            sp.sink.sink_name: {"written": 0, "failed": 0} for sp in plan.sinks
        }

    async def write(self, unit: Unit) -> None:
        if unit.batch is not None:
            records = None
            rows: list[Any] | None = None  # materialised once, shared by row-plane sinks
            n = unit.batch.num_rows
            src: list[Any] | None = None
        else:
            values = unit.values or []
            idx = [i for i, v in enumerate(values) if v is not GONE]
            records = [values[i] for i in idx]
            rows = records
            n = len(records)
            src = [unit.source_rows[i] for i in idx] if unit.source_rows is not None else records
        if n == 0:
            return
        written = [False] * n
        failed: list[list[Failure]] = [[] for _ in range(n)]

        def get_rows() -> list[Any]:
            nonlocal rows
            if rows is None:
                rows = unit.batch.to_pylist()
            return rows

        if self.router is not None:
            await self._write_routed(get_rows(), written, failed, src)
        else:
            for sp in self.sink_plans:
                if sp.selected is DataPlane.ARROW_BATCHES:
                    results = await _call(sp, "write_arrow_batch", unit.batch, n)
                elif sp.selected is DataPlane.PYTHON_BATCHES:
                    results = await _call(sp, "write_batch", get_rows(), n)
                else:
                    results = await _write_rows(sp, get_rows())
                self._collect(sp, results, written, failed, get_rows, src)

        unrouted = 0
        for i in range(n):
            if written[i]:
                unit.written += 1
            elif failed[i]:
                unit.errored += 1
            else:
                unrouted += 1  # only a router leaves a record neither written nor failed
        unit.dropped += unrouted
        self.unrouted += unrouted
        for fs in failed:
            unit.failures.extend(fs)

    def _collect(self, sp: SinkPlan, results: list[WriteResult] | BaseException | None,
                 written: list[bool], failed: list[list[Failure]], get_rows: Any,
                 src: list[Any] | None) -> None:
        stats = self.per_sink[sp.sink.sink_name]
        n = len(written)
        if results is None:
            stats["written"] += n
            for i in range(n):
                written[i] = True
            return
        if isinstance(results, BaseException):
            results = [WriteResult.failed(results)] * n  # type: ignore[list-item]
        rows = None
        for i, res in enumerate(results):
            if res.written:
                written[i] = True
                stats["written"] += 1
            else:
                stats["failed"] += 1
                if rows is None:
                    rows = get_rows()
                error = res.error or ContractError(
                    f"sink {sp.sink.sink_name!r} reported record {i} not written without an error"
                )
                failed[i].append(Failure(
                    "sink_write", sp.sink.sink_name, error,
                    src[i] if src is not None else rows[i], processed_record=rows[i], is_sink=True,
                ))

    async def _write_routed(self, rows: list[Any], written: list[bool],
                            failed: list[list[Failure]], src: list[Any] | None) -> None:
        router = self.router
        assert router is not None
        for i, row in enumerate(rows):
            origin = src[i] if src is not None else row
            try:
                sink = router.select(row)
            except Exception as exc:
                failed[i].append(Failure("sink_write", "router", exc, origin, row, is_sink=True))
                continue
            if sink is None:
                continue
            stats = self.per_sink[sink.sink_name]
            try:
                await sink.write(row)
            except Exception as exc:
                stats["failed"] += 1
                failed[i].append(Failure("sink_write", sink.sink_name, exc, origin, row, is_sink=True))
            else:
                stats["written"] += 1
                written[i] = True


async def _call(sp: SinkPlan, method: str, payload: Any, n: int) -> list[WriteResult] | BaseException | None:
    try:
        results = await getattr(sp.sink, method)(payload)
    except Exception as exc:
        return exc
    if results is None:
        return None
    if not isinstance(results, list) or len(results) != n or not all(
        isinstance(r, WriteResult) for r in results
    ):
        got = f"{len(results)} items" if isinstance(results, list) else type(results).__name__
        return ContractError(
            f"sink {sp.sink.sink_name!r} returned {got} from {method}() for {n} records; it "
            f"must return None or exactly one WriteResult per input record, in order"
        )
    return results


async def _write_rows(sp: SinkPlan, rows: list[Any]) -> list[WriteResult] | None:
    write = sp.sink.write
    results: list[WriteResult] | None = None
    for i, row in enumerate(rows):
        try:
            await write(row)
        except Exception as exc:
            if results is None:
                results = [WriteResult.ok()] * i
            results.append(WriteResult.failed(exc))
        else:
            if results is not None:
                results.append(WriteResult.ok())
    return results
