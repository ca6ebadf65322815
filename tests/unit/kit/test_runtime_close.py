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
