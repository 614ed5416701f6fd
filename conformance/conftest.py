"""Checkout bootstrap: `pytest conformance --sink …` works before the package is installed.

When the distribution is installed, the ``pytest11`` entry point has already loaded
``conformance.plugin``; otherwise this conftest (loaded early because the suite directory
is among the arguments) registers it, so its options exist when the command line is parsed.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.has_plugin("conformance.plugin"):
        import conformance.plugin

        pluginmanager.register(conformance.plugin, "conformance.plugin")
