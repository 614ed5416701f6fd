"""Sink contract, writers over several sinks, and the built-in sinks."""

from agora.sinks.base import BaseSink
from agora.sinks.csv import CsvSink
from agora.sinks.fanout import SinkFanOut
from agora.sinks.jsonl import JsonLinesSink
from agora.sinks.memory import MemorySink
from agora.sinks.parquet import ParquetSink
from agora.sinks.router import SinkRouter
from agora.sinks.simple import NullSink, StdoutSink

__all__ = [
    "BaseSink",
    "CsvSink",
    "JsonLinesSink",
    "MemorySink",
    "NullSink",
    "ParquetSink",
    "SinkFanOut",
    "SinkRouter",
    "StdoutSink",
]
