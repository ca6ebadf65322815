"""Runtime.close never hangs on a background task that does not stop, and still closes the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tradestack.kit import runtime as runtime_module
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime


async def test_a_closer_that_never_finishes_is_abandoned_and_the_rest_still_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "CLOSE_STEP_SECONDS", 0.2)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path)
    runtime = Runtime.open(settings)
    closed: list[str] = []

    async def stuck() -> None:
        await asyncio.Event().wait()  # nobody ever sets it

    async def first() -> None:
        closed.append("first")

    runtime.closers.append(first)  # runs last: closers are popped newest first
    runtime.closers.append(stuck)
    await asyncio.wait_for(runtime.close(), timeout=10)
    assert closed == ["first"]
    assert runtime.closers == []


async def test_a_closer_that_swallows_its_cancellation_is_still_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asyncio.wait_for` waits for the cancelled work to end: work that catches the cancellation and keeps
    waiting (as a client library's close can) would hang the process's shutdown, or a test's teardown."""
    monkeypatch.setattr(runtime_module, "CLOSE_STEP_SECONDS", 0.2)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path)
    runtime = Runtime.open(settings)
    release = asyncio.Event()

    async def deaf() -> None:
        while True:
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue  # swallowed

    runtime.closers.append(deaf)
    try:
        async with asyncio.timeout(10):
            await runtime.close()
    finally:
        release.set()  # let the abandoned work end, so the test leaves no task behind
        await asyncio.sleep(0)
    assert runtime.closers == []
