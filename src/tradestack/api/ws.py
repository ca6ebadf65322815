"""``/ws``: authenticated streaming of market data, and of your orders, fills and portfolio.

Protocol (JSON text frames):

* Authenticate with ``{"op": "auth", "token": "<access token or API key>"}`` as the first message
  (within ``TRADESTACK_WS_AUTH_TIMEOUT_SECONDS``), or with an ``Authorization: Bearer`` /
  ``X-API-Key`` header or a ``?token=`` query parameter on the upgrade request. The server answers
  ``{"type": "welcome", ...}``. Failures get ``{"type": "error", ...}`` and close code 4401.
* ``{"op": "subscribe", "channels": ["quotes:AAPL", "candles:AAPL:1m", "orderbook:BTC-USD"]}``
  → ``{"type": "subscribed", "channels": [...]}``; a bad channel gets an error naming it and the
  rest are still subscribed. ``{"op": "unsubscribe", "channels": [...]}`` likewise.
* ``{"op": "ping"}`` → ``{"type": "pong"}``. The server sends ``{"type": "heartbeat"}`` when
  it has sent nothing for ``TRADESTACK_WS_HEARTBEAT_SECONDS``, and re-checks the credential that
  often, whether the stream is busy or idle (a revoked token, disabled user or expired token ends
  the stream with 4401).
* Data: ``{"type": "quote"|"candle"|"orderbook", "channel": ..., "data": {...}}``. A client that
  reads slowly receives the newest value of each channel (conflation), never a growing backlog.
* Your accounts: subscribe to ``orders``, ``fills`` or ``portfolio`` (every account you own, as
  ``orders:<account id>`` and so on, named in the ``subscribed`` reply) or to one account's
  ``orders:<account id>``. Frames are ``{"type": "order"|"fill"|"portfolio", ...}``: an order as
  ``GET /api/orders/{id}`` shows it after each change, each fill, and the account's cash and
  positions after each fill. Order and fill updates are never conflated: all arrive, in order; a
  client that leaves more than 1000 unread is closed with 1008 (read the REST API to catch up).
  Accounts opened after subscribing need a new subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from tradestack.api.protocol import DIRECT_WRITE_EXTENSION, DirectSocket, text_frame_bytes
from tradestack.books.service import BooksService
from tradestack.core.errors import NotFoundError, PermissionDeniedError, TradestackError
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Caller, IdentityService, Principal
from tradestack.kit.aio import stop_tasks
from tradestack.kit.fanout import DirectWriter, FanoutHub, Mailbox, MailboxOverflowError
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import WEBSOCKET_CONNECTIONS_ACTIVE
from tradestack.kit.outages import count_outage, unavailable_backend
from tradestack.kit.runtime import Runtime, Slot
from tradestack.marketdata.schemas import frame, iso
from tradestack.marketdata.service import (
    BOOK_KEY,
    FANOUT_CHANNEL,
    MARKET_DATA_CHANNEL_KINDS,
    QUOTE_KEY,
    MarketDataService,
    decode_message,
)
from tradestack.trading.events import ACCOUNT_CHANNEL, ACCOUNT_CHANNELS

router = APIRouter()
log = get_logger(__name__)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_POLICY = 1008
MAX_MESSAGE_BYTES = 16_384
MESSAGES_PER_SECOND = 50
LOSSLESS_ACCOUNT_CHANNELS = ("orders", "fills")  # every update counts; portfolio snapshots conflate
CONFLATED_KINDS = (*MARKET_DATA_CHANNEL_KINDS, *(kind for kind in ACCOUNT_CHANNELS if kind not in LOSSLESS_ACCOUNT_CHANNELS))
"""The channel kinds a slow client's mailbox conflates (`websocket_messages_conflated`'s labels)."""


def _frame(kind: str, **fields: Any) -> str:
    return orjson.dumps({"type": kind, **fields}).decode()


def _error(error: str, detail: str, **fields: Any) -> str:
    return _frame("error", error=error, detail=detail, **fields)


HUB: Slot[FanoutHub] = Slot("marketdata.hub")


async def hub_of(runtime: Runtime) -> FanoutHub:
    """This process's hub of market data and account updates, started on first use and stopped when the runtime
    closes."""
    hub = runtime.components.get(HUB)
    if hub is None:
        channels = (FANOUT_CHANNEL, ACCOUNT_CHANNEL)
        created = FanoutHub(runtime.bus, channels, decode_message, wire=text_frame_bytes, conflated_kinds=CONFLATED_KINDS)
        hub = runtime.components.put(HUB, created)
        runtime.closers.append(hub.close)
    await hub.start()
    return hub


class _Credential:
    """The credential a connection authenticated with, re-checked on every heartbeat."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def authenticate(self, runtime: Runtime, caller: Caller) -> Principal:
        async with runtime.database.read_session() as session:
            service = IdentityService(session, runtime, caller)
            if self.token.startswith("tsk_"):
                return await service.authenticate_api_key(self.token)
            return await service.authenticate_bearer(self.token)


def _initial_token(websocket: WebSocket) -> str | None:
    authorization = websocket.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return websocket.headers.get("x-api-key") or websocket.query_params.get("token")


class _Session:
    """One connected client."""

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.mailbox = Mailbox(lossless=tuple(f"{kind}:" for kind in LOSSLESS_ACCOUNT_CHANNELS))
        self.channels: set[str] = set()
        self.credential: _Credential | None = None
        self.principal: Principal | None = None
        client = websocket.client
        agent = websocket.headers.get("user-agent")
        self.caller = Caller(ip=client.host if client else None, user_agent=agent[:300] if agent else None)
        self.hub: FanoutHub | None = None

    async def login(self, token: str) -> bool:
        credential = _Credential(token)
        try:
            principal = await credential.authenticate(self.runtime, self.caller)
        except TradestackError as exc:
            await self.ws.send_text(_error(exc.error, exc.detail))
            await self.ws.close(CLOSE_UNAUTHENTICATED, exc.detail[:120])
            return False
        if not principal.can(Permission.MARKET_DATA_READ):
            detail = f"role {principal.role.value} does not have permission {Permission.MARKET_DATA_READ.value}"
            await self.ws.send_text(_error("PermissionDeniedError", detail))
            await self.ws.close(CLOSE_FORBIDDEN, detail[:120])
            return False
        self.credential, self.principal = credential, principal
        return True

    async def authenticate(self) -> bool:
        token = _initial_token(self.ws)
        if token is None:
            try:
                raw = await asyncio.wait_for(self.ws.receive_text(), self.runtime.settings.ws_auth_timeout_seconds)
            except TimeoutError:
                await self.ws.send_text(_error("AuthenticationError", "authenticate within the time allowed"))
                await self.ws.close(CLOSE_UNAUTHENTICATED, "authentication timed out")
                return False
            message = self._parse(raw)
            token = message.get("token") if message and message.get("op") == "auth" else None
            if not isinstance(token, str) or not token:
                detail = 'first message must be {"op": "auth", "token": "<access token or API key>"}'
                await self.ws.send_text(_error("AuthenticationError", detail))
                await self.ws.close(CLOSE_UNAUTHENTICATED, "not authenticated")
                return False
        return await self.login(token)

    @staticmethod
    def _parse(raw: str) -> dict[str, Any] | None:
        if len(raw) > MAX_MESSAGE_BYTES:
            return None
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return message if isinstance(message, dict) else None

    async def reader(self) -> None:
        window_start, count = asyncio.get_running_loop().time(), 0
        while True:
            raw = await self.ws.receive_text()
            now = asyncio.get_running_loop().time()
            if now - window_start >= 1.0:
                window_start, count = now, 0
            count += 1
            if count > MESSAGES_PER_SECOND:
                self.mailbox.control(_error("RateLimitedError", f"more than {MESSAGES_PER_SECOND} messages a second"))
                raise MailboxOverflowError("client message rate exceeded")
            message = self._parse(raw)
            if message is None:
                self.mailbox.control(_error("BadRequestError", f"send JSON objects of at most {MAX_MESSAGE_BYTES} bytes"))
                continue
            await self.handle(message)

    async def handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ping":
            self.mailbox.control(_frame("pong", ts=iso(self.runtime.clock.now())))
        elif op in ("subscribe", "unsubscribe"):
            channels = message.get("channels")
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels) or not channels:
                self.mailbox.control(_error("BadRequestError", f'{op}: "channels" must be a non-empty list of strings'))
                return
            await (self.subscribe(channels) if op == "subscribe" else self.unsubscribe(channels))
        elif op == "auth":
            token = message.get("token")
            if isinstance(token, str) and token:
                if await self.login(token):
                    self.mailbox.control(_frame("authenticated", user=self.principal.email if self.principal else None))
                else:
                    raise WebSocketDisconnect(CLOSE_UNAUTHENTICATED)
            else:
                self.mailbox.control(_error("BadRequestError", 'auth: give "token"'))
        else:
            self.mailbox.control(_error("BadRequestError", f"unknown op {op!r}: use subscribe, unsubscribe, ping or auth"))

    async def _account_channels(self, name: str) -> list[str]:
        """``orders``/``fills``/``portfolio`` (every account of yours) or ``orders:<account id>``, as bus channels."""
        kind, _, account_id = name.partition(":")
        principal = self.principal
        if principal is None or not principal.can(Permission.ACCOUNTS_READ_OWN):
            raise PermissionDeniedError(f"{kind} needs permission {Permission.ACCOUNTS_READ_OWN.value}")
        async with self.runtime.database.read_session() as session:
            books = BooksService(session, self.runtime.clock)
            own = [account.id for account in await books.accounts_of(principal.user_id)]
            if not account_id:
                return [f"{kind}:{account}" for account in own]
            if account_id in own or (principal.can(Permission.ACCOUNTS_READ_ALL) and await books.account(account_id)):
                return [name]
        raise NotFoundError(f"{name}: no account {account_id}")

    async def subscribe(self, requested: list[str]) -> None:
        service = MarketDataService(self.runtime)
        accepted: list[str] = []
        for name in requested:
            try:
                if name.partition(":")[0] in ACCOUNT_CHANNELS:
                    channels = await self._account_channels(name)
                else:
                    channels = [await service.check_channel(name)]
            except TradestackError as exc:
                self.mailbox.control(_error(exc.error, exc.detail, channel=name))
                continue
            for channel in channels:
                if channel not in self.channels and len(self.channels) >= self.runtime.settings.ws_max_subscriptions:
                    limit = self.runtime.settings.ws_max_subscriptions
                    self.mailbox.control(_error("BadRequestError", f"at most {limit} channels per connection", channel=name))
                    break
                if self.hub is None:
                    self.hub = await hub_of(self.runtime)
                self.channels.add(channel)
                self.hub.add(self.mailbox, channel)
                accepted.append(channel)
                await self._snapshot(channel)
        if accepted:
            self.mailbox.control(_frame("subscribed", channels=accepted))

    async def _snapshot(self, channel: str) -> None:
        """Send the current value at once, so a client does not wait for the next update."""
        kind, _, symbol = channel.partition(":")
        if kind not in ("quotes", "orderbook"):
            return
        raw = await self.runtime.cache.get((QUOTE_KEY if kind == "quotes" else BOOK_KEY) + symbol)
        if raw is not None:
            # The same frame the bus carries (so the mailbox can drop the duplicate when it arrives).
            label = "quote" if kind == "quotes" else "orderbook"
            self.mailbox.offer(channel, frame(label, channel, orjson.loads(raw)).decode())

    async def unsubscribe(self, requested: list[str]) -> None:
        removed = [c for c in requested if c in self.channels]
        for channel in removed:
            self.channels.discard(channel)
            if self.hub is not None:
                self.hub.remove(self.mailbox, channel)
        self.mailbox.control(_frame("unsubscribed", channels=removed))

    async def writer(self) -> None:
        """Send what the mailbox holds; every `ws_heartbeat_seconds` re-check the credential (busy or not), and
        send a heartbeat when nothing reached the client for that long (frames written directly count)."""
        heartbeat = self.runtime.settings.ws_heartbeat_seconds
        loop = asyncio.get_running_loop()
        mailbox = self.mailbox
        checked_at = sent_at = loop.time()
        while True:
            now = loop.time()
            if now >= checked_at + heartbeat:
                if not await self._still_allowed():
                    return
                checked_at = now
            last_sent = max(sent_at, mailbox.written_at)
            if now >= last_sent + heartbeat:
                frames = [_frame("heartbeat", ts=iso(self.runtime.clock.now()))]
            else:
                frames = await mailbox.take(timeout=min(checked_at, last_sent) + heartbeat - now)
                if not frames:
                    continue
            mailbox.sending = True
            try:
                for data in frames:
                    await self.ws.send_text(data)
            finally:
                mailbox.sending = False
            sent_at = loop.time()

    async def _still_allowed(self) -> bool:
        if self.credential is None:
            return False
        try:
            principal = await self.credential.authenticate(self.runtime, self.caller)
        except TradestackError as exc:
            await self.ws.send_text(_error(exc.error, exc.detail))
            await self.ws.close(CLOSE_UNAUTHENTICATED, exc.detail[:120])
            return False
        except Exception as exc:
            backend = unavailable_backend(exc)
            if backend is None:
                raise
            # The database or cache is away or saturated (no pooled connection in time): an outage, not
            # a verdict on the credential, which was valid at the last check. The stream goes on and the
            # credential is checked again at the next heartbeat.
            count_outage(backend, "websocket_credential_recheck", exc)
            return True
        self.principal = principal
        return True

    def leave(self) -> None:
        if self.hub is not None:
            for channel in self.channels:
                self.hub.remove(self.mailbox, channel)
        self.channels.clear()


def _direct_writer(websocket: WebSocket) -> DirectWriter | None:
    """The connection's direct writer, when the server offers one (`tradestack serve`) and it suits."""
    direct = websocket.scope.get("extensions", {}).get(DIRECT_WRITE_EXTENSION)
    return direct if isinstance(direct, DirectSocket) and direct.usable() else None


@router.websocket("/ws")
async def stream(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    session = _Session(websocket, runtime)
    try:
        if not await session.authenticate():
            return
    except WebSocketDisconnect:
        return
    principal = session.principal
    await websocket.send_text(
        _frame("welcome", user=principal.email if principal else None, heartbeat_seconds=runtime.settings.ws_heartbeat_seconds)
    )
    WEBSOCKET_CONNECTIONS_ACTIVE.inc()
    session.mailbox.direct = _direct_writer(websocket)
    reader = asyncio.create_task(session.reader())
    writer = asyncio.create_task(session.writer())
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if isinstance(error, MailboxOverflowError):
                await websocket.close(CLOSE_POLICY, str(error)[:120])
            elif error is not None and not isinstance(error, WebSocketDisconnect):
                log.warning("websocket ended with an error", error=f"{type(error).__name__}: {error}")
    finally:
        await stop_tasks((reader, writer), "websocket session")
        session.leave()
        WEBSOCKET_CONNECTIONS_ACTIVE.dec()
        if websocket.application_state == WebSocketState.CONNECTED and websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):
                await websocket.close()
