"""Shared steps of the sink checks: validating returned results, comparing what was
persisted with what was written, and a record that fails from the inside."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

from conformance._agora import WriteResult
from conformance.checks._context import ProbeRecord, SinkContext
from conformance.data import describe_multiset_diff, describe_sequence_diff
from conformance.harness import Namespace

__all__ = [
    "ExplodingRecord",
    "InjectedFault",
    "assert_contains",
    "assert_persisted",
    "check_results",
    "failed_indices",
    "write_all",
]


class InjectedFault(RuntimeError):
    """Raised on purpose by the conformance suite's fault injectors."""


class ExplodingRecord(ProbeRecord, Mapping[str, Any]):
    """A record that raises :class:`InjectedFault` on any access to its contents, so that
    any sink's ``write`` fails from the inside, whatever medium it writes to."""

    def __getitem__(self, key: str) -> Any:
        raise InjectedFault("conformance: this record explodes when read (injected fault)")

    def __iter__(self) -> Iterator[str]:
        raise InjectedFault("conformance: this record explodes when read (injected fault)")

    def __len__(self) -> int:
        raise InjectedFault("conformance: this record explodes when read (injected fault)")

    def __repr__(self) -> str:
        return "<ExplodingRecord>"


def check_results(ctx: SinkContext, results: Any, n: int, call: str) -> list[Any] | None:
    """Assert the contract §4 result shape: None, or a list of exactly ``n`` WriteResults."""
    if results is None:
        return None
    assert isinstance(results, list), (
        f"{ctx.name}.{call} returned {type(results).__name__}; it must return None or a list "
        f"with one WriteResult per input"
    )
    assert len(results) == n, (
        f"{ctx.name}.{call} returned {len(results)} result(s) for {n} input record(s); it must "
        f"return exactly one WriteResult per input, in order (or None when all were written)"
    )
    for i, result in enumerate(results):
        assert isinstance(result, WriteResult), (
            f"{ctx.name}.{call}: result {i} is {type(result).__name__} ({result!r}), not a "
            f"WriteResult"
        )
    return results


def failed_indices(results: list[Any] | None) -> list[int]:
    return [] if results is None else [i for i, r in enumerate(results) if not r.written]


async def write_all(
    ctx: SinkContext,
    sink: Any,
    rows: Sequence[Any],
    sizes: Sequence[int],
    *,
    call: str = "write_batch",
) -> None:
    """Write ``rows`` in consecutive batches of ``sizes`` (0 = an empty batch; the rest
    one by one with ``write``), asserting that every record was reported written."""
    pos = 0
    for size in sizes:
        chunk = list(rows[pos : pos + size])
        pos += size
        results = check_results(ctx, await sink.write_batch(chunk), len(chunk), call)
        bad = failed_indices(results)
        assert not bad, (
            f"{ctx.name}.write_batch reported valid records as failed (indices {bad}): "
            f"{[str(results[i].error) for i in bad][:3]}"  # type: ignore[index]
        )
    for row in rows[pos:]:
        returned = await sink.write(row)
        assert returned is None, f"{ctx.name}.write() returned {returned!r}; it must return None"


def assert_persisted(
    ctx: SinkContext,
    ns: Namespace,
    expected_rows: Sequence[Any],
    what: str,
    *,
    ordered: bool = False,
) -> list[Hashable]:
    """Read ``ns`` back through the harness and assert it holds exactly ``expected_rows``
    (as a multiset; as a sequence too when ``ordered``). Returns the read-back."""
    actual = ctx.read_back(ns)
    expected = ctx.canon(list(expected_rows))
    diff = describe_multiset_diff(expected, actual)
    assert diff is None, f"{ctx.name}: {what}: {diff}"
    if ordered:
        seq = describe_sequence_diff(expected, actual)
        assert seq is None, f"{ctx.name}: {what}: records persisted out of write order: {seq}"
    return actual


def assert_contains(
    ctx: SinkContext, actual: Sequence[Hashable], required_rows: Sequence[Any], what: str
) -> None:
    """Assert the read-back ``actual`` contains every one of ``required_rows``."""
    missing = Counter(ctx.canon(list(required_rows))) - Counter(actual)
    assert not missing, (
        f"{ctx.name}: {what}: {sum(missing.values())} record(s) missing from the read-back "
        f"(e.g. {list(missing)[:2]})"
    )
