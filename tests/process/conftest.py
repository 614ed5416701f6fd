"""Fixtures for the process-lane tests: every test also checks that no slot is left in
shared memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agora.testing import assert_no_shm_slots


@pytest.fixture(autouse=True)
def no_slot_leaks() -> Iterator[None]:
    """Fail a test that leaves a shared-memory slot of this process behind."""
    yield
    assert_no_shm_slots()
