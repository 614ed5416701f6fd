"""Fixtures for the preservation suite: thin wrappers over :mod:`agora.testing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agora.testing import assert_no_worker_processes


@pytest.fixture
def no_orphans() -> Iterator[None]:
    """Use in every test that starts processes: asserts that no worker outlives it
    (after a short grace period for reaping)."""
    yield
    assert_no_worker_processes()
