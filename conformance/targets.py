"""A conformance target: one component (sink or source) together with its harness and where
the choice came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.harness import SinkHarness, SourceHarness

__all__ = ["Target"]


@dataclass
class Target:
    """What the checks run against.

    ``label`` is how the user named it (``agora.CsvSink``, ``mypkg.sinks:MySink``, a
    factory path, or a ``SinkConformance`` subclass); ``origin`` says where the choice
    came from (command line, Python API) for the report header.
    """

    kind: str  # "sink" | "source"
    label: str
    harness: SinkHarness | SourceHarness
    origin: str
    component_class: Any = None

    @property
    def short(self) -> str:
        """A compact name for test IDs (the last dotted component)."""
        return self.label.replace(":", ".").rsplit(".", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        cls = self.component_class
        return {
            "kind": self.kind,
            "target": self.label,
            "class": f"{cls.__module__}:{cls.__qualname__}" if isinstance(cls, type) else None,
            "harness": self.harness.describe(),
            "origin": self.origin,
            "read_back": bool(getattr(self.harness, "has_read_back", False)),
            "seed_data": bool(getattr(self.harness, "has_seed_data", False)),
        }
