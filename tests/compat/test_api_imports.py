"""Upstream's plugin-facing import paths and typing spellings keep working."""

from __future__ import annotations

from typing import Any

from agora import BaseSink, BaseSource, IterableBatchSource, IterableSource, is_batch_capable_source


def test_base_classes_are_subscriptable_for_record_types() -> None:
    class Numbers(BaseSource[int]):
        async def stream(self) -> Any:
            yield 1

    class Dicts(BaseSink[dict]):  # type: ignore[type-arg]
        async def write(self, record: Any) -> None: ...

    assert Numbers.source_name == "Numbers" and Dicts.sink_name == "Dicts"


def test_is_batch_capable_source_tells_batch_sources_from_row_sources() -> None:
    assert is_batch_capable_source(IterableBatchSource([[1, 2]]))
    assert not is_batch_capable_source(IterableSource([1]))
    assert not is_batch_capable_source([1, 2])


def test_plugin_import_paths_resolve_to_the_same_classes() -> None:
    from agora.core.sink import BaseSink as CoreSink
    from agora.core.source import BaseSource as CoreSource
    from agora.sinks.io.stdout import StdoutSink
    from agora.sources.file.parquet import ParquetSource

    import agora

    assert CoreSink is BaseSink and CoreSource is BaseSource
    assert StdoutSink is agora.StdoutSink and ParquetSource is agora.ParquetSource
