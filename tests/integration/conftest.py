"""Users of every role with tokens, on the app under test (for every integration test)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from tradestack.books.service import BooksService
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit.runtime import Runtime

PASSWORD = "correct horse battery staple"


@dataclass
class TestUser:
    __test__ = False  # a helper, not a test class

    id: str
    email: str
    role: Role
    password: str
    access_token: str = ""
    refresh_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


MakeUser = Callable[..., Awaitable[TestUser]]


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    value: Runtime = app.state.runtime
    return value


@pytest.fixture
def make_user(runtime: Runtime, client: httpx.AsyncClient) -> MakeUser:
    """Create a user (unique email) and, unless told otherwise, sign them in."""

    async def make(role: Role = Role.TRADER, *, login: bool = True, password: str = PASSWORD) -> TestUser:
        email = f"{role.value}-{uuid.uuid4().hex[:10]}@example.com"
        async with identity_session(runtime, Caller()) as service:
            user = await service.create_user(email, password, role)
            if role == Role.TRADER:
                await BooksService(service.session, runtime.clock).open_account(user.id, "paper", "AUD")
        made = TestUser(user.id, email, role, password)
        if login:
            response = await client.post("/api/auth/login", json={"email": email, "password": password})
            assert response.status_code == 200, response.text
            made.access_token = response.json()["access_token"]
            made.refresh_token = response.json()["refresh_token"]
        return made

    return make
