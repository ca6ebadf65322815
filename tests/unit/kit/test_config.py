from pathlib import Path

import pytest
from pydantic import ValidationError

from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import Settings

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_are_embedded_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "development"
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path.as_posix()}/tradestack.db"
    assert settings.redis_url is None


def test_environment_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_PORT", "9123")
    monkeypatch.setenv("TRADESTACK_REDIS_URL", "redis://127.0.0.1:6379/2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 9123
    assert settings.redis_url == "redis://127.0.0.1:6379/2"


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_secret_is_read_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("s" * 40 + "\n")
    monkeypatch.setenv("TRADESTACK_SECRET_KEY_FILE", str(secret))
    assert Settings(_env_file=None).secret_key.get_secret_value() == "s" * 40  # type: ignore[call-arg]


def test_connection_urls_are_read_from_files_like_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose secrets: the URLs carry passwords, so they come from files too (TRADESTACK_DATABASE_URL_FILE ...)."""
    urls = {
        "database_url": "postgresql+asyncpg://tradestack:pw@postgres-primary:5432/tradestack",
        "database_replica_url": "postgresql+asyncpg://tradestack:pw@postgres-replica:5432/tradestack",
        "redis_url": "redis://:pw@redis-primary:6379/0",
    }
    for name, url in urls.items():
        (tmp_path / name).write_text(url + "\n")
        monkeypatch.setenv(f"TRADESTACK_{name.upper()}_FILE", str(tmp_path / name))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert {name: getattr(settings, name) for name in urls} == urls
    assert "pw" not in str(settings.masked())


def test_unreadable_secret_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="TRADESTACK_SECRET_KEY_FILE"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TRADESTACK_WORKERS=3\n")
    assert Settings(_env_file=env_file).workers == 3  # type: ignore[call-arg]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_missing_secret_is_refused_outside_development(environment: str) -> None:
    settings = Settings(environment=environment, _env_file=None)  # type: ignore[call-arg, arg-type]
    with pytest.raises(ConfigurationError, match="TRADESTACK_SECRET_KEY is missing"):
        settings.check_secrets()


def test_short_secret_is_refused_in_production() -> None:
    settings = Settings(environment="production", secret_key="short", _env_file=None)  # type: ignore[call-arg, arg-type]
    with pytest.raises(ConfigurationError, match="TRADESTACK_SECRET_KEY is shorter"):
        settings.check_secrets()


def test_strong_secrets_pass_in_production() -> None:
    hosts = ["api.example.com"]
    Settings(
        environment="production", secret_key="x" * 48, encryption_key="k" * 44, allowed_hosts=hosts, _env_file=None
    ).check_secrets()  # type: ignore[call-arg, arg-type]


def test_wildcard_hosts_are_refused_in_production() -> None:
    settings = Settings(environment="production", secret_key="x" * 48, encryption_key="k" * 44, _env_file=None)  # type: ignore[call-arg, arg-type]
    with pytest.raises(ConfigurationError, match="TRADESTACK_ALLOWED_HOSTS must list"):
        settings.check_secrets()


def test_missing_encryption_key_is_refused_in_production() -> None:
    settings = Settings(environment="production", secret_key="x" * 48, _env_file=None)  # type: ignore[call-arg, arg-type]
    with pytest.raises(ConfigurationError, match="TRADESTACK_ENCRYPTION_KEY is missing"):
        settings.check_secrets()


def test_there_is_no_default_key_and_development_starts_without_one() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.secret_key is None
    assert settings.encryption_key is None
    settings.check_secrets()


def test_masked_hides_secrets_and_url_passwords() -> None:
    settings = Settings(
        database_url="postgresql://trader:hunter2@db.internal:5432/ts",
        redis_url="redis://:redispass@127.0.0.1:6379/0",
        secret_key="y" * 40,
        _env_file=None,
    )  # type: ignore[call-arg, arg-type]
    text = str(settings.masked())
    assert "hunter2" not in text
    assert "redispass" not in text
    assert "y" * 40 not in text
    assert settings.masked()["database_url"] == "postgresql+asyncpg://trader:***@db.internal:5432/ts"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("database_url", "mysql://x@y/z", "unsupported database driver"),
        ("redis_url", "http://127.0.0.1", "redis_url must start with"),
        ("port", "70000", "less than or equal to 65535"),
        ("environment", "prod", "'development', 'staging' or 'production'"),
    ],
)
def test_invalid_values_say_what_to_fix(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value}, _env_file=None)  # type: ignore[arg-type]


def test_rate_limit_exempt_ips_are_exact_addresses_or_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_RATE_LIMIT_EXEMPT_IPS", '[" 127.0.0.1", "0:0::1"]')
    assert Settings(_env_file=None).rate_limit_exempt_ips == ["127.0.0.1", "::1"]  # type: ignore[call-arg]
    monkeypatch.setenv("TRADESTACK_RATE_LIMIT_EXEMPT_IPS", '["10.0.0.0/8"]')
    with pytest.raises(ValidationError, match=r"rate_limit_exempt_ips.*no networks"):
        Settings(_env_file=None)  # type: ignore[call-arg]
