"""Suite module for sinks: collected by the conformance plugin when a sink target is given
(``pytest conformance --sink pkg.mod.Class``)."""

from __future__ import annotations

import pytest

from conformance.api import SinkConformance, configured_targets
from conformance.targets import Target


class TestSinkConformance(SinkConformance):
    """Every sink check against every sink named on the command line."""

    def conformance_targets(self, config: pytest.Config) -> list[Target]:
        return configured_targets(config, "sink")
