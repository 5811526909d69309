"""Rate-limit settings: proxies, Upstash credentials, which store is used."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.ratelimit.backends import RedisBackend, UpstashBackend, create_backend


def build(**values: object) -> Settings:
    """Settings from `values` only; in development unless they say otherwise (the production
    default has checks of its own, tested where they matter)."""
    values.setdefault("environment", "development")
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestTrustedProxies:
    def test_comma_separated_or_json(self) -> None:
        expected = [ip_network("10.0.0.1/32"), ip_network("10.1.0.0/16")]
        assert build(trusted_proxies="10.0.0.1, 10.1.0.0/16").trusted_proxies == expected
        assert build(trusted_proxies='["10.0.0.1", "10.1.0.0/16"]').trusted_proxies == expected

    def test_empty_means_none(self) -> None:
        assert build(trusted_proxies="").trusted_proxies == []

    def test_garbage_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="not an IP address or CIDR range"):
            build(trusted_proxies="proxy.internal")


class TestUpstash:
    def test_url_needs_a_token(self) -> None:
        with pytest.raises(ValidationError, match="UPSTASH_REDIS_REST_TOKEN is not"):
            build(upstash_redis_rest_url="https://x.upstash.io")

    def test_https_outside_development(self) -> None:
        with pytest.raises(ValidationError, match="https://"):
            build(
                environment="production",
                upstash_redis_rest_url="http://x.upstash.io",
                upstash_redis_rest_token="t",
            )

    async def test_selects_the_backend(self) -> None:
        upstash = create_backend(
            build(upstash_redis_rest_url="https://x.upstash.io", upstash_redis_rest_token="t")
        )
        plain = create_backend(build())
        try:
            assert isinstance(upstash, UpstashBackend)
            assert isinstance(plain, RedisBackend)
        finally:
            await upstash.aclose()
            await plain.aclose()


class TestLimits:
    def test_limits_must_be_positive(self) -> None:
        with pytest.raises(ValidationError):
            build(rate_limit_user_limit=0)
