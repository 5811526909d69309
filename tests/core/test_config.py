"""Settings validation and the documented configuration."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from tests.fixtures.servers import ROOT


def build(**values: object) -> Settings:
    """Settings from `values` only; in development unless they say otherwise (the production
    default has checks of its own, tested where they matter)."""
    values.setdefault("environment", "development")
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestMongoUrl:
    @pytest.mark.parametrize("url", ["http://db:27017", "mongodb://", "localhost:27017", ""])
    def test_bad_url_is_refused(self, url: str) -> None:
        with pytest.raises(ValidationError, match="not a MongoDB connection string"):
            build(mongodb_url=url)

    @pytest.mark.parametrize(
        "url",
        ["mongodb://127.0.0.1:27017", "mongodb://a:1,b:2/?replicaSet=rs0", "mongodb+srv://c.x.net"],
    )
    def test_good_url_is_accepted(self, url: str) -> None:
        assert build(mongodb_url=url).mongodb_url == url


class TestFirebaseEmulatorGuard:
    def test_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="refused outside development and test"):
            build(environment="production", firebase_auth_emulator_host="127.0.0.1:9099")

    def test_allowed_in_test(self) -> None:
        settings = build(environment="test", firebase_auth_emulator_host="127.0.0.1:9099")
        assert settings.firebase_auth_emulator_host == "127.0.0.1:9099"


class TestEnvExample:
    def test_every_setting_is_documented(self) -> None:
        text = (ROOT / ".env.example").read_text()
        documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
        expected = {name.upper() for name in Settings.model_fields}
        assert expected - documented == set()


class TestIdentitySecrets:
    def test_jwt_secret_required_in_production(self) -> None:
        with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
            build(environment="production", firebase_auth_emulator_host=None)

    @pytest.mark.parametrize("name", ["jwt_secret", "master_token"])
    def test_short_secret_refused_in_production(self, name: str) -> None:
        values: dict[str, object] = {"jwt_secret": "j" * 48, name: "short-secret"}
        with pytest.raises(ValidationError, match="too short"):
            build(environment="production", firebase_auth_emulator_host=None, **values)

    def test_strong_secrets_accepted_in_production(self) -> None:
        settings = build(
            environment="production",
            firebase_auth_emulator_host=None,
            jwt_secret="j" * 48,
            master_token="m" * 48,
        )
        assert settings.jwt_signing_key == "j" * 48

    def test_development_generates_an_unguessable_key(self) -> None:
        first = build(environment="development", jwt_secret=None)
        second = build(environment="development", jwt_secret=None)
        assert len(first.jwt_signing_key) >= 48
        assert first.jwt_signing_key == first.jwt_signing_key
        assert first.jwt_signing_key != second.jwt_signing_key

    def test_master_token_may_not_look_like_a_device_key(self) -> None:
        with pytest.raises(ValidationError, match="dk_"):
            build(master_token="dk_" + "x" * 40)

    def test_admin_domains_are_parsed(self) -> None:
        settings = build(admin_email_domains=" Example.com, @ops.example.org ,")
        assert settings.admin_domains == frozenset({"example.com", "ops.example.org"})

    @pytest.mark.parametrize("value", ["a@example.com", "example", "exa mple.com"])
    def test_bad_admin_domain_refused(self, value: str) -> None:
        with pytest.raises(ValidationError, match="not an email domain"):
            build(admin_email_domains=value)

    def test_jwt_algorithm_is_hmac_only(self) -> None:
        with pytest.raises(ValidationError):
            build(jwt_algorithm="none")
        with pytest.raises(ValidationError):
            build(jwt_algorithm="RS256")


class TestOutboxRetention:
    def test_entries_must_be_archived_before_they_are_deleted(self) -> None:
        with pytest.raises(ValidationError, match="OUTBOX_RETENTION_DAYS must be at least"):
            build(outbox_archive_after_days=30, outbox_retention_days=7)
        assert (
            build(outbox_archive_after_days=7, outbox_retention_days=7).outbox_retention_days == 7
        )
