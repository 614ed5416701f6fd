"""Harnesses for Agora's dead-letter sinks (``SQLiteDLQSink``, ``JsonLinesDLQSink``): read
back with ``sqlite3`` and ``json`` directly, never through the sinks' own readers."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import agora
from conformance.harness import DLQSinkHarness, Namespace

__all__ = ["JsonLinesDLQSinkHarness", "SQLiteDLQSinkHarness"]

_JSON_COLUMNS = ("checkpoint", "record", "processed_record")


class SQLiteDLQSinkHarness(DLQSinkHarness):
    """``SQLiteDLQSink`` on ``dlq.sqlite``; rows of table ``agora_dlq`` read with
    ``sqlite3`` (JSON columns decoded, ``round_trippable`` as a bool)."""

    target: Any = agora.SQLiteDLQSink

    def path(self, ns: Namespace) -> Path:
        return ns.path / "dlq.sqlite"

    def build(self, ns: Namespace) -> Any:
        return self.target(self.path(ns))

    def read_back(self, ns: Namespace) -> list[Mapping[str, Any]]:
        path = self.path(ns)
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM agora_dlq ORDER BY rowid").fetchall()
        out: list[Mapping[str, Any]] = []
        for row in rows:
            data = dict(row)
            for name in _JSON_COLUMNS:
                data[name] = json.loads(data[name]) if data[name] is not None else None
            data["round_trippable"] = bool(data["round_trippable"])
            out.append(data)
        return out


class JsonLinesDLQSinkHarness(DLQSinkHarness):
    """``JsonLinesDLQSink`` on ``dlq.jsonl``; one ``json.loads`` per line."""

    target: Any = agora.JsonLinesDLQSink

    def path(self, ns: Namespace) -> Path:
        return ns.path / "dlq.jsonl"

    def build(self, ns: Namespace) -> Any:
        return self.target(self.path(ns))

    def read_back(self, ns: Namespace) -> list[Mapping[str, Any]]:
        path = self.path(ns)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_bytes().split(b"\n") if line.strip()]
