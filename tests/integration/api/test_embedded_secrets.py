"""`tradestack up` signs with a key it generated for itself: no key from the source is accepted."""

from __future__ import annotations

import ast
import signal
import stat
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest

import tradestack
from tradestack.identity.tokens import InvalidTokenError, TokenSigner
from tradestack.identity.tokens import _kid as key_id
from tradestack.kit.config import Settings

from ..identity.test_token_attacks import _claims  # type: ignore[import-not-found]
from . import test_server_process as server  # type: ignore[attr-defined]

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")]
spawn = server.spawn
ADMIN_PASSWORD = "an admin password for this test"
SOURCE = Path(tradestack.__file__).parent


def _string_constants() -> set[str]:
    """Every string literal in the package's source: whatever a reader of the code could try as a key."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
                found.add(node.value)
    return found


def _forge(key: str, subject: str, kid: str) -> str:
    return jwt.encode(_claims(subject), key, algorithm="HS256", headers={"kid": kid})


def test_up_generates_its_secrets_and_refuses_tokens_signed_with_source_constants(tmp_path: Path, spawn: object) -> None:
    port = server.free_port()
    data_dir = tmp_path / "data"
    env = server._env(tmp_path, TRADESTACK_ADMIN_PASSWORD=ADMIN_PASSWORD)
    args = [str(server.TRADESTACK), "up", "--no-demo-data", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data_dir)]  # noqa: S104
    process = spawn(args, env)  # type: ignore[operator]
    base = f"http://127.0.0.1:{port}"
    server._wait_ready(base, process)

    directory = data_dir / "secrets"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("signing.key", "encryption.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    signing_key = (directory / "signing.key").read_text().strip()

    login = httpx.post(f"{base}/api/auth/login", json={"email": "admin@tradestack.local", "password": ADMIN_PASSWORD})
    assert login.status_code == 200, login.text
    issued = login.json()["access_token"]
    server_kid = jwt.get_unverified_header(issued)["kid"]
    admin_id = jwt.decode(issued, signing_key, algorithms=["HS256"], audience="tradestack-api")[
        "sub"
    ]  # signed with the file's key

    constants = _string_constants()
    assert len(constants) > 1000
    assert signing_key not in constants
    # Every constant, with its own key id and with the server's, is refused by the server's signer ...
    signer = TokenSigner(Settings(secret_key=signing_key, _env_file=None))  # type: ignore[call-arg, arg-type]
    now = datetime.now(UTC)
    for constant in constants:
        for kid in (server_kid, key_id(constant)):
            with pytest.raises(InvalidTokenError):
                signer.decode(_forge(constant, admin_id, kid), "access", now)
    # ... and by the running server (a sample over HTTP; the accepted token shows the path works).
    assert httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {issued}"}).status_code == 200
    for constant in sorted(constants)[:: max(1, len(constants) // 25)]:
        forged = _forge(constant, admin_id, server_kid)
        assert httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    output = process.stdout.read().decode() if process.stdout else ""
    assert "warning: listening on 0.0.0.0" in output, output[-2000:]
    assert str(directory) in output
