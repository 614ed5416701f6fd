"""Suite module for sources: collected by the conformance plugin when a source target is
given (``pytest conformance --source pkg.mod.Class``)."""

from __future__ import annotations

import pytest

from conformance.api import SourceConformance, configured_targets
from conformance.targets import Target


class TestSourceConformance(SourceConformance):
    """Every source check against every source named on the command line."""

    def conformance_targets(self, config: pytest.Config) -> list[Target]:
        return configured_targets(config, "source")
