"""Handshakes return as soon as their condition holds and fail, naming it, when it never does."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agora.testing import wait_for_path, wait_until, wait_until_async


def test_wait_until_returns_once_another_thread_makes_the_condition_true():
    flag = threading.Event()
    threading.Thread(target=flag.set).start()
    wait_until(flag.is_set, timeout_s=10, what="the flag")
    assert flag.is_set()


def test_wait_until_fails_naming_what_never_happened():
    with pytest.raises(AssertionError,
                       match=r"waited 0.05 s for the impossible, and it never happened"):
        wait_until(lambda: False, timeout_s=0.05, what="the impossible")


def test_wait_until_async_lets_the_awaited_task_run():
    async def main() -> list[str]:
        seen: list[str] = []

        async def worker() -> None:
            seen.append("ran")

        task = asyncio.ensure_future(worker())
        await wait_until_async(lambda: seen == ["ran"], timeout_s=10, what="the worker")
        await task
        return seen

    assert asyncio.run(main()) == ["ran"]


def test_wait_until_async_fails_naming_what_never_happened():
    with pytest.raises(AssertionError, match="for the counter"):
        asyncio.run(wait_until_async(lambda: False, timeout_s=0.05, what="the counter"))


def test_wait_for_path_sees_a_file_created_later_and_names_a_missing_one(tmp_path):
    target = tmp_path / "started-0"

    async def main() -> None:
        asyncio.get_running_loop().call_soon(target.touch)
        await wait_for_path(target, timeout_s=10)

    asyncio.run(main())
    with pytest.raises(AssertionError, match="never-0 to appear"):
        asyncio.run(wait_for_path(tmp_path / "never-0", timeout_s=0.05))
