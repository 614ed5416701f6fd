"""Fixtures for the process-lane tests: every test also checks that no slot is left in
shared memory."""

from __future__ import annotations

import os

import pytest

from agora.process.shm import leftover_slot_paths


@pytest.fixture(autouse=True)
def no_slot_leaks():
    """Fail a test that leaves a shared-memory slot of this process behind."""
    yield
    left = leftover_slot_paths(os.getpid())
    for path in left:
        os.unlink(path)
    assert not left, f"shared-memory slots left behind: {left}"
