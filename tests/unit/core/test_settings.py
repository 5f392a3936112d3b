from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sentinel_usage.core.errors import ConfigurationError
from sentinel_usage.core.settings import load_settings, with_local_jwt_secret


def test_production_refuses_missing_keys_and_embedded_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENTINEL_MODE", "production")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    for name in (
        "SENTINEL_JWT_SECRET",
        "KAFKA_BOOTSTRAP_SERVERS",
        "CLICKHOUSE_URL",
        "SENTINEL_DATABASE_URL",
        "SENTINEL_OAUTH_KEYS_DIR",
    ):
        assert name in str(info.value)


def test_production_refuses_a_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_MODE", "production")
    monkeypatch.setenv("SENTINEL_JWT_SECRET", "short")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://clickhouse:8123")
    monkeypatch.setenv("SENTINEL_DATABASE_URL", "postgresql+asyncpg://registry/passes")
    monkeypatch.setenv("SENTINEL_OAUTH_KEYS_DIR", "/etc/sentinel/oauth-keys")
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        load_settings()


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_API_PORT", "eighty")
    with pytest.raises(ConfigurationError, match="api_port"):
        load_settings()


def test_local_mode_creates_a_private_secret_once(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    first = with_local_jwt_secret(settings)
    again = with_local_jwt_secret(settings)
    assert first.jwt_secret is not None
    assert again.jwt_secret is not None
    assert first.jwt_secret.get_secret_value() == again.jwt_secret.get_secret_value()
    assert len(first.jwt_secret.get_secret_value()) >= 32
    mode = stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode)
    assert mode == 0o600
    assert "**********" in repr(first.jwt_secret)  # never printed by accident


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
@pytest.mark.parametrize("variable", ["SENTINEL_API_HOST", "SENTINEL_METRICS_HOST"])
def test_local_mode_refuses_to_listen_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str, variable: str
) -> None:
    monkeypatch.setenv(variable, host)
    with pytest.raises(ConfigurationError, match=rf"{variable}.*loopback"):
        load_settings()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_local_mode_listens_on_any_loopback_address(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("SENTINEL_API_HOST", host)
    assert load_settings().api_host == host


def test_production_may_listen_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_MODE", "production")
    monkeypatch.setenv("SENTINEL_API_HOST", "0.0.0.0")
    monkeypatch.setenv("SENTINEL_JWT_SECRET", "x" * 32)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://clickhouse:8123")
    monkeypatch.setenv("SENTINEL_DATABASE_URL", "postgresql+asyncpg://registry/passes")
    monkeypatch.setenv("SENTINEL_OAUTH_KEYS_DIR", "/etc/sentinel/oauth-keys")
    assert load_settings().api_host == "0.0.0.0"
