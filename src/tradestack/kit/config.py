"""One typed, validated, frozen configuration object.

Values come from (highest priority first) constructor arguments, ``TRADESTACK_*`` environment
variables, ``TRADESTACK_<NAME>_FILE`` files for secrets (Docker/Kubernetes secrets), a ``.env``
file, then the defaults below.
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tradestack.core.errors import ConfigurationError

ENV_PREFIX = "TRADESTACK_"
# Secrets that must be set outside development (in development they are generated into the data
# directory on first start, see kit/secrets.py); other secrets are optional. There is no default key.
REQUIRED_SECRETS = ("secret_key", "encryption_key")
# Connection URLs carry passwords: like the secrets they may come from ``TRADESTACK_<NAME>_FILE`` (compose secrets).
URL_FIELDS_FROM_FILES = ("database_url", "database_replica_url", "redis_url")
Environment = Literal["development", "staging", "production"]
FeedName = Literal["replay", "synthetic", "ccxt"]
FineResolution = Literal["1m", "5m", "15m", "1h"]


class SecretFileSource(PydanticBaseSettingsSource):
    """Reads ``TRADESTACK_<NAME>_FILE`` for every secret field (``SecretStr``) and the connection URLs."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{ENV_PREFIX}{field_name.upper()}_FILE")
        if not path or not (_is_secret(field) or field_name in URL_FIELDS_FROM_FILES):
            return None, field_name, False
        try:
            content = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{ENV_PREFIX}{field_name.upper()}_FILE points to {path!r}, which cannot be read: {exc.strerror}"
            ) from exc
        return content, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


class Settings(BaseSettings):
    """Effective configuration of one Tradestack process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    environment: Environment = "development"
    data_dir: Path = Field(default=Path("var"), description="Where embedded data (SQLite, backups) lives.")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default is SQLite at <data_dir>/tradestack.db."
    )
    database_replica_url: str | None = Field(default=None, description="Optional read replica for read-only repositories.")
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_max_overflow: int = Field(default=10, ge=0, le=1000)
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    database_echo: bool = False
    database_lock_timeout_seconds: float = Field(
        default=15.0,
        ge=0,
        le=3600,
        description="PostgreSQL lock_timeout of every connection: a statement waiting longer for a lock fails "
        "instead of queueing behind a stalled holder (0 = wait forever).",
    )
    database_idle_in_transaction_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="PostgreSQL idle_in_transaction_session_timeout: the server ends a session that sits this long "
        "inside a transaction (a stalled or stopped process), releasing its locks (0 = never).",
    )

    redis_url: str | None = Field(default=None, description="Redis for cache, rate limits and fan-out; in-process when unset.")
    redis_namespace: str = Field(
        default="ts",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key and pub/sub channel: keeps installations sharing a Redis apart.",
    )

    secret_key: SecretStr | None = Field(
        default=None, description="Signs access tokens (HS256); generated into <data_dir>/secrets/ in development when unset."
    )
    secret_key_previous: SecretStr | None = Field(
        default=None, description="The signing key before the last rotation; tokens it signed stay valid until they expire."
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="AES-256-GCM key (32 bytes, base64) for encrypted columns such as venue credentials and MFA secrets;"
        " generated into <data_dir>/secrets/ in development when unset.",
    )
    encryption_previous_keys: SecretStr | None = Field(
        default=None, description="Comma-separated earlier encryption keys, still accepted for decryption until rotate-key."
    )
    admin_password: SecretStr | None = Field(
        default=None, description="Password of the admin `tradestack up` creates on first start; generated when unset."
    )

    jwt_issuer: str = "tradestack"
    jwt_audience: str = "tradestack-api"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=14 * 86_400, ge=300, le=90 * 86_400)
    mfa_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)

    password_min_length: int = Field(default=12, ge=12, le=128)
    argon2_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id iterations (OWASP: >= 2 at 19 MiB).")
    argon2_memory_kib: int = Field(default=65_536, ge=8_192, le=1_048_576, description="argon2id memory in KiB.")
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    login_failure_limits: str = Field(
        default="5/15 minutes;20/day",
        description="Sign-in attempts per account before 429 (progressive: every window applies); a success resets them.",
    )
    login_ip_limits: str = Field(
        default="50/15 minutes;500/day", description="Sign-in attempts per client IP before 429 (successes count too)."
    )

    rate_limit_per_ip: str = Field(default="1200/minute", description="Requests per client IP, every route.")
    rate_limit_per_principal: str = Field(default="600/minute", description="Requests per user or API key.")
    rate_limit_auth: str = Field(default="30/minute", description="Requests per client IP to /api/auth/*.")
    rate_limit_exempt_ips: list[str] = Field(
        default_factory=list,
        description="Load generators' client addresses (JSON list, exact addresses) exempt from the per-IP limits: every"
        " route, /api/auth/* and sign-in attempts per IP. Per-user, per-API-key, per-account and per-email sign-in limits"
        " still apply. For a load-test target only (`tradestack loadtest` simulates many users from one address); never"
        " in production.",
    )
    rate_limit_routes: dict[str, str] = Field(
        default_factory=dict, description='Per-route overrides, e.g. {"POST /api/orders": "100/minute"} (JSON).'
    )
    max_api_keys_per_user: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="API keys one user may hold at once (revoked and expired ones do not count): each key has its own"
        " per-principal and per-route limits, so more keys would multiply a user's request budget.",
    )

    allowed_hosts: list[str] = Field(default_factory=lambda: ["*"], description="Host headers accepted (JSON list).")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (JSON list); none by default.")
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024, le=104_857_600)
    hsts_seconds: int = Field(default=31_536_000, ge=0, description="Strict-Transport-Security max-age, sent on HTTPS only.")
    # No inline script or style, except the one <style> the chart library (lightweight-charts, pinned by
    # web/package-lock.json) adds for its attribution logo, allowed by its hash; the dashboard e2e fails on
    # any CSP violation, so a library update that changes it is caught.
    content_security_policy: str = (
        "default-src 'self'; img-src 'self' data:; "
        "style-src 'self' 'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='; script-src 'self'; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or CIDRs) of reverse proxies whose X-Forwarded-For/-Proto are believed (JSON list);"
        " none by default, so the client address is the peer's.",
    )
    request_read_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="Time to read a request (headers and body); slower clients are cut off."
    )
    keep_alive_seconds: int = Field(default=5, ge=1, le=600, description="Idle time before a keep-alive connection closes.")
    worker_healthcheck_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="With several workers, how long one may leave the supervisor's ping (every 0.5 s) unanswered before "
        "it is killed and replaced, dropping its connections. uvicorn's own 5 s is too short for a busy worker on a "
        "loaded machine: its answering thread waits for the interpreter lock behind the request loop.",
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = Field(default=True, description="One JSON object per line; false gives coloured console logs.")

    drain_seconds: float = Field(
        default=0.0, ge=0, le=600, description="After SIGTERM, /api/ready answers 503 for this long before shutdown starts."
    )
    graceful_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How long in-flight requests may take to finish."
    )
    git_sha: str | None = Field(default=None, description="Commit of this build; read from git when unset.")

    # Market data
    marketdata_in_process: bool | None = Field(
        default=None,
        description="Run the feeds inside the API process. Unset: yes for `tradestack up`, no for `serve api` "
        "(production runs `tradestack serve marketdata` and fans out through Redis).",
    )
    marketdata_feeds: list[FeedName] = Field(
        default_factory=lambda: list[FeedName](["replay", "synthetic"]),
        description="Feeds to run (JSON list): replay of stored bars, seeded synthetic prices for instruments "
        "without history, live crypto via ccxt.",
    )
    marketdata_symbols: list[str] = Field(
        default_factory=list, description="Only these symbols (JSON list); every catalogue instrument when empty."
    )
    replay_speed: float = Field(
        default=720.0, gt=0, le=1e7, description="Simulated seconds per real second when replaying stored bars."
    )
    replay_tick_seconds: float = Field(
        default=0.25, ge=0.001, le=60, description="Real seconds between two replayed quotes of one symbol."
    )
    replay_spread_bps: Decimal = Field(default=Decimal(2), ge=0, le=1000, description="Half-spread of replayed quotes.")
    synthetic_seed: int = Field(default=7, description="Seed of the synthetic generators (same seed, same prices).")
    backup_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint for `backup create --copy-to s3://...` (unset: AWS S3)."
    )
    backup_s3_region: str = Field(default="us-east-1", description="Region of the off-site S3 bucket.")
    retention_bar_days: dict[FineResolution, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: dict[FineResolution, int]({"1m": 90, "5m": 180, "15m": 365, "1h": 730}),
        description="`tradestack data retention`: bars of a resolution older than this many days are pruned where "
        "the symbol has coarser bars for that period (JSON object; daily bars are kept).",
    )
    retention_anonymise_after_days: int = Field(
        default=30, ge=1, le=36_500, description="`tradestack data retention`: anonymise users deactivated this long ago."
    )
    marketdata_stale_seconds: float = Field(
        default=5.0, gt=0, le=86_400, description="/api/ready fails when no quote was published for this long."
    )
    market_hours_always_open: bool = Field(
        default=False,
        description="Demo only: treat every venue as open around the clock (order checks, matching and open_now agree).",
    )
    quote_ttl_seconds: float = Field(default=300.0, gt=0, description="How long a cached quote or book is served.")
    ccxt_exchange: str = Field(default="binance", description="ccxt exchange id of the live crypto feed.")
    ccxt_symbols: dict[str, str] = Field(
        default_factory=lambda: {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"},
        description="Our symbol -> the venue's symbol for the live feed (JSON object).",
    )
    ccxt_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    gc_freeze_survivors: bool = Field(
        default=True,
        description="Freeze what survives each full pass of the cyclic garbage collector, so the next pass visits "
        "only objects that became long-lived since (pauses of 60-210 ms with 1,000 WebSocket clients otherwise); "
        "the frozen set is unfrozen for one full pass whenever it has doubled.",
    )
    loop_stall_ms: float = Field(
        default=100.0,
        ge=0,
        le=60_000,
        description="Log `loop_stall` with the stacks of the event loop's thread (and of any other thread running "
        "Python) when the loop runs this late; 0 turns the watch off (event_loop_lag_seconds is then not measured).",
    )
    ws_heartbeat_seconds: float = Field(default=15.0, gt=0, le=3600, description="Heartbeat interval on /ws.")
    ws_auth_timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Time to authenticate on /ws.")
    ws_compression: bool = Field(
        default=False,
        description="permessage-deflate on /ws: less bandwidth, but compressing every frame for every client "
        "costs CPU and fan-out latency.",
    )
    ws_max_subscriptions: int = Field(default=200, ge=1, le=100_000, description="Channels per WebSocket connection.")
    ws_max_frame_bytes: int = Field(
        default=65_536, ge=16_384, le=16_777_216, description="Largest WebSocket message the server reads (it closes with 1009)."
    )

    # Observability (issue 14): background probes and external venues
    probe_interval_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="How often the background probe refreshes database_up, redis_up and disk gauges."
    )
    external_probe_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="Time a venue has to answer the /api/health/external probe."
    )
    ccxt_api_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Override entries of the ccxt exchange's API URLs (JSON object, e.g. a testnet or proxy: "
        '{"public": "https://testnet.binance.vision/api/v3"}).',
    )

    # Audit chain (issue 12): outbox rows chained in batches by one leased chainer
    audit_chain_batch_size: int = Field(
        default=500, ge=1, le=100_000, description="Most outbox rows the audit chainer chains in one transaction."
    )
    audit_chain_interval_seconds: float = Field(
        default=0.25, gt=0, le=60, description="How often the leading audit chainer looks for outbox rows other processes staged."
    )
    audit_chainer_lease_seconds: float = Field(
        default=10.0,
        ge=0.5,
        le=3600,
        description="Lease of the leading audit chainer: a leader that stops renewing it (died, stalled) is replaced "
        "after this long.",
    )

    # Trading: paper matching engine
    engine_in_process: bool | None = Field(
        default=None,
        description="Run the paper matching engine inside the API process. Unset: yes when the API is the only "
        "process that could (one worker, no Redis), and always for `tradestack up`; otherwise run "
        "`tradestack serve engine`, which takes orders from a Redis stream.",
    )
    strategies_in_process: bool | None = Field(
        default=None,
        description="Run the deployed strategies (/api/strategy) inside the API process. Unset: where the engine "
        "runs in process; otherwise run `tradestack serve strategies` (one per installation).",
    )
    engine_shards: int = Field(
        default=1, ge=1, le=64, description="Accounts are split over this many engines (`serve engine --shard N`)."
    )
    engine_reconcile_seconds: float = Field(
        default=2.0, gt=0, le=3600, description="How often an engine looks in the database for open orders it missed."
    )
    engine_gauges_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often the engine that keeps them (embedded, or shard 0) refreshes the platform-wide gauges "
        "(portfolio_value, trade_execution_success_ratio).",
    )
    engine_read_gather_seconds: float = Field(
        default=0.010,
        ge=0,
        le=0.1,
        description="After a read of its command stream that found orders, how long `serve engine` lets more gather "
        "before it reads again: under load one read and one matching step take many orders, each at most this much "
        "later; the first order after a quiet spell is read at once. 0: read again at once (lowest fill latency, "
        "more CPU per order).",
    )
    equity_record_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description="How often every account's equity in its base currency is recorded for the portfolio chart "
        "(by the process that runs the engine: `tradestack up`, or `serve engine --shard 0`).",
    )
    equity_chart_points: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="Most points GET /api/portfolio/equity answers; longer ranges are downsampled.",
    )
    paper_fees: dict[str, tuple[Decimal, Decimal]] = Field(
        default_factory=lambda: {
            "NASDAQ": (Decimal("0.5"), Decimal(1)),
            "NYSE": (Decimal("0.5"), Decimal(1)),
            "ASX": (Decimal(8), Decimal(6)),
            "NSE": (Decimal(3), Decimal(20)),
            "FX": (Decimal("0.2"), Decimal(0)),
            "CRYPTO": (Decimal(10), Decimal(0)),
        },
        description="Paper fees per venue (JSON object): [basis points of the notional, minimum per order in the "
        "instrument's quote currency]. Venues not listed pay nothing.",
    )
    paper_slippage_bps: Decimal = Field(
        default=Decimal(1), ge=0, lt=10_000, description="Takers trade this far beyond the touch."
    )
    paper_latency_ms: float = Field(default=0.0, ge=0, le=60_000, description="Simulated time for an order to reach the market.")
    paper_participation_rate: Decimal = Field(
        default=Decimal("0.25"), gt=0, le=1, description="Largest share of a quote's or print's size one order may take."
    )

    # Trading: default pre-trade limits (per account; amounts in the account's base currency)
    risk_max_order_notional: Decimal = Field(default=Decimal(1_000_000), ge=0)
    risk_max_position_quantity: Decimal = Field(default=Decimal(1_000_000), ge=0)
    risk_max_gross_exposure: Decimal = Field(default=Decimal(10_000_000), ge=0)
    risk_price_collar_pct: Decimal = Field(default=Decimal(10), ge=0, lt=100)
    risk_max_orders_per_minute: int = Field(default=600, ge=0)
    risk_daily_loss_limit: Decimal = Field(default=Decimal(100_000), ge=0)

    @model_validator(mode="after")
    def _one_engine_per_shard(self) -> Settings:
        if self.engine_in_process and self.workers > 1:
            raise ValueError(
                "TRADESTACK_ENGINE_IN_PROCESS=true needs TRADESTACK_WORKERS=1: each worker would run its own matching "
                "engine; with several workers run `tradestack serve engine` (and Redis) instead"
            )
        if self.strategies_in_process and self.workers > 1:
            raise ValueError(
                "TRADESTACK_STRATEGIES_IN_PROCESS=true needs TRADESTACK_WORKERS=1: each worker would run every strategy; "
                "with several workers run `tradestack serve strategies` (and Redis) instead"
            )
        return self

    @field_validator("database_url", "database_replica_url", "redis_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "database_replica_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url  # only when a URL is set: CLI paths without one start faster

        url = make_url(value)
        if url.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
            return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        if url.drivername == "sqlite":
            return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
        if url.drivername not in {"postgresql+asyncpg", "sqlite+aiosqlite"}:
            raise ValueError(
                f"unsupported database driver {url.drivername!r}: use postgresql+asyncpg://… or sqlite+aiosqlite:///…"
            )
        return value

    @field_validator("rate_limit_exempt_ips")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        """Exact client addresses, written as the server sees them (``::1``, not ``0:0::1``)."""
        import ipaddress

        try:
            return [str(ipaddress.ip_address(item.strip())) for item in value]
        except ValueError as exc:
            raise ValueError(f"rate_limit_exempt_ips: {exc} (give exact addresses such as 127.0.0.1, no networks)") from exc

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, SecretFileSource(settings_cls), dotenv_settings

    @property
    def paper_fx_fee_bps(self) -> Decimal:
        """The paper fee of a currency conversion, in basis points (the FX venue's entry of `paper_fees`)."""
        return self.paper_fees.get("FX", (Decimal(0), Decimal(0)))[0]

    @property
    def effective_engine_in_process(self) -> bool:
        """Whether this API process runs the matching engine (see `engine_in_process`)."""
        if self.engine_in_process is not None:
            return self.engine_in_process
        return self.workers == 1 and self.redis_url is None

    @property
    def effective_strategies_in_process(self) -> bool:
        """Whether this API process runs the deployed strategies (see `strategies_in_process`)."""
        if self.strategies_in_process is not None:
            return self.strategies_in_process
        return self.effective_engine_in_process

    @property
    def effective_database_url(self) -> str:
        """The primary database URL, defaulting to SQLite under `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tradestack.db').as_posix()}"

    def check_secrets(self) -> None:
        """Refuse default or missing secrets (and a wildcard host list) outside development, naming the setting."""
        if self.environment == "development":
            return
        problems = []
        for name in REQUIRED_SECRETS:
            value = getattr(self, name)
            env_name = f"{ENV_PREFIX}{name.upper()}"
            if value is None or not value.get_secret_value():
                problems.append(f"{env_name} is missing (set it or {env_name}_FILE)")
            elif len(value.get_secret_value()) < 32:
                problems.append(f"{env_name} is shorter than 32 characters")
        if "*" in self.allowed_hosts:
            problems.append('TRADESTACK_ALLOWED_HOSTS must list the host names clients use (e.g. ["api.example.com"]), not "*"')
        if problems:
            raise ConfigurationError(f"refusing to start in {self.environment}: " + "; ".join(problems))

    def masked(self) -> dict[str, Any]:
        """The configuration as plain data with secrets and URL passwords masked."""
        from sqlalchemy.engine import make_url  # lazily, see _async_driver

        data: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if _is_secret(field):
                data[name] = None if value is None else "**********"
            elif name.endswith("_url") and value:
                data[name] = make_url(value).render_as_string(hide_password=True) if "://" in value else value
            elif isinstance(value, Path):
                data[name] = str(value)
            else:
                data[name] = value
        data["effective_database_url"] = make_url(self.effective_database_url).render_as_string(hide_password=True)
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
