"""Shared fixtures for the unit tests: thin wrappers over :mod:`agora.testing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agora.testing import assert_no_worker_processes


@pytest.fixture
def no_orphans() -> Iterator[None]:
    """Use in every test that starts processes: asserts none is left afterwards."""
    yield
    assert_no_worker_processes()
