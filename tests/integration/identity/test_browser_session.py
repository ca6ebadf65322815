"""Dashboard sessions: refresh token only in an HttpOnly cookie, CSRF-checked, rotated, cleared on logout."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tradestack.identity import totp
from tradestack.identity.browser import CSRF_COOKIE, CSRF_HEADER, PREFIX, REFRESH_COOKIE
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime

from .conftest import PASSWORD, MakeUser  # type: ignore[import-not-found]
from .test_mfa import _enable_mfa  # type: ignore[import-not-found]


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def _login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post(f"{PREFIX}/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    assert "refresh_token" not in body
    return body


async def test_login_sets_a_strict_httponly_refresh_cookie_scoped_to_its_path(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(Role.VIEWER, login=False)
    response = await client.post(f"{PREFIX}/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200
    cookies = _set_cookies(response)
    refresh = cookies[REFRESH_COOKIE].lower()
    assert "httponly" in refresh
    assert "samesite=strict" in refresh
    assert f"path={PREFIX}" in refresh
    assert "secure" not in refresh  # plain HTTP here; see the HTTPS test
    csrf = cookies[CSRF_COOKIE].lower()
    assert "httponly" not in csrf
    assert "samesite=strict" in csrf
    body = response.json()
    assert body["csrf_token"] == client.cookies[CSRF_COOKIE]
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["email"] == user.email


async def test_cookie_is_secure_over_https(app: object, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER, login=False)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as https:
        response = await https.post(f"{PREFIX}/login", json={"email": user.email, "password": PASSWORD})
    assert "; secure" in _set_cookies(response)[REFRESH_COOKIE].lower()


async def test_refresh_rotates_and_needs_the_csrf_token(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.TRADER, login=False)
    first = await _login(client, user.email)
    old_cookie = client.cookies[REFRESH_COOKIE]

    without = await client.post(f"{PREFIX}/refresh")
    assert without.status_code == 403
    assert CSRF_HEADER in without.json()["detail"]
    wrong = await client.post(f"{PREFIX}/refresh", headers={CSRF_HEADER: "0" * 64})
    assert wrong.status_code == 403
    cross_site = await client.post(
        f"{PREFIX}/refresh", headers={CSRF_HEADER: first["csrf_token"], "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    foreign = await client.post(f"{PREFIX}/refresh", headers={CSRF_HEADER: first["csrf_token"], "Origin": "https://evil.example"})
    assert foreign.status_code == 403

    rotated = await client.post(f"{PREFIX}/refresh", headers={CSRF_HEADER: first["csrf_token"], "Origin": "http://testserver"})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert client.cookies[REFRESH_COOKIE] != old_cookie
    assert second["csrf_token"] != first["csrf_token"]
    assert second["access_token"] != first["access_token"]

    # The rotated-away cookie comes back (stolen): refused, cookie cleared, and the family is revoked.
    new_cookie = client.cookies[REFRESH_COOKIE]
    client.cookies.set(REFRESH_COOKIE, old_cookie, path=PREFIX)
    replay = await client.post(f"{PREFIX}/refresh", headers={CSRF_HEADER: first["csrf_token"]})
    assert replay.status_code == 401
    assert "max-age=0" in _set_cookies(replay)[REFRESH_COOKIE].lower()
    client.cookies.set(REFRESH_COOKIE, new_cookie, path=PREFIX)
    after = await client.post(f"{PREFIX}/refresh", headers={CSRF_HEADER: second["csrf_token"]})
    assert after.status_code == 401


async def test_logout_clears_the_cookie_and_the_refresh_token_is_refused(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.TRADER, login=False)
    session = await _login(client, user.email)
    cookie = client.cookies[REFRESH_COOKIE]
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    no_csrf = await client.post(f"{PREFIX}/logout", headers=bearer)
    assert no_csrf.status_code == 403
    out = await client.post(f"{PREFIX}/logout", headers={**bearer, CSRF_HEADER: session["csrf_token"]})
    assert out.status_code == 204
    assert "max-age=0" in _set_cookies(out)[REFRESH_COOKIE].lower()
    assert REFRESH_COOKIE not in client.cookies
    assert (await client.get("/api/auth/me", headers=bearer)).status_code == 401
    client.cookies.set(REFRESH_COOKIE, cookie, path=PREFIX)
    refused = await client.post(f"{PREFIX}/refresh", headers={CSRF_HEADER: session["csrf_token"]})
    assert refused.status_code == 401


async def test_login_with_mfa_and_with_a_recovery_code(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    secret, recovery = await _enable_mfa(client, runtime, user)
    challenge = (await client.post(f"{PREFIX}/login", json={"email": user.email, "password": PASSWORD})).json()
    assert challenge["mfa_required"] is True
    assert REFRESH_COOKIE not in client.cookies
    code = totp.code_at(secret, runtime.clock.now() + timedelta(seconds=totp.STEP_SECONDS))
    verified = await client.post(f"{PREFIX}/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": code})
    assert verified.status_code == 200, verified.text
    assert REFRESH_COOKIE in client.cookies
    client.cookies.clear()
    challenge = (await client.post(f"{PREFIX}/login", json={"email": user.email, "password": PASSWORD})).json()
    by_recovery = await client.post(f"{PREFIX}/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": recovery[0]})
    assert by_recovery.status_code == 200, by_recovery.text
    assert "csrf_token" in by_recovery.json()


async def test_json_token_api_is_unchanged(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER, login=False)
    response = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert {"access_token", "refresh_token"} <= response.json().keys()
    assert "set-cookie" not in response.headers
