"""Settings validation and the documented configuration."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from tests.fixtures.services import ROOT


def build(**values: object) -> Settings:
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
