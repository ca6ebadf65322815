"""schemathesis against the running app's OpenAPI: valid and invalid inputs, no server error.

A real `tradestack up` serves on a free loopback port. Each generated request carries a
freshly minted admin token (an earlier case may have logged the previous one out), so the
generated data reaches past authentication into every endpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tradestack.identity.tokens import TokenSigner
from tradestack.kit.config import Settings

pytestmark = pytest.mark.slow  # a real `tradestack up` serves the requests
ADMIN_PASSWORD = "contract-test-admin-password"
TRADESTACK = Path(sys.executable).parent / "tradestack"
SIGNER = TokenSigner(Settings(_env_file=None))  # type: ignore[call-arg]  # the server runs on the same defaults


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("contract")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
    env.update(
        TRADESTACK_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TRADESTACK_LOG_LEVEL="warning",
        TRADESTACK_ARGON2_TIME_COST="1",
        TRADESTACK_ARGON2_MEMORY_KIB="8192",
        TRADESTACK_RATE_LIMIT_AUTH="100000/minute",
        TRADESTACK_LOGIN_IP_LIMITS="100000/minute",
        TRADESTACK_RATE_LIMIT_PER_IP="100000/minute",
        TRADESTACK_RATE_LIMIT_PER_PRINCIPAL="100000/minute",
    )
    process = subprocess.Popen(
        [str(TRADESTACK), "up", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # first start imports the shipped history
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        login = httpx.post(f"{base}/api/auth/login", json={"email": "admin@tradestack.local", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        me = httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        yield base, me.json()["id"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def _operations(base: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(server: tuple[str, str], mode: GenerationMode) -> None:
    """Every operation, valid and invalid inputs: no 5xx (schemathesis' not_a_server_error check)."""
    base, admin_id = server
    operations = _operations(base)
    assert len(operations) >= 15
    exercised, nothing_to_generate = [], []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            token, _ = SIGNER.issue(admin_id, "access", datetime.now(UTC), 600)  # fresh: a case may log out
            case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])

        try:
            run()
        except Unsatisfiable:
            # e.g. an operation without inputs has no invalid variant to generate
            nothing_to_generate.append(operation.label)
        else:
            exercised.append(operation.label)
    assert len(exercised) >= (15 if mode == GenerationMode.POSITIVE else 8), (exercised, nothing_to_generate)
