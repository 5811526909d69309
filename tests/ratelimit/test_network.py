"""Which address a request is counted under."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from app.ratelimit.network import client_address

PROXIES = [ip_network("10.0.0.0/8"), ip_network("2001:db8:ffff::/48")]


class TestClientAddress:
    def test_peer_without_trusted_proxies(self) -> None:
        assert client_address("203.0.113.1", ["198.51.100.9"], []) == "203.0.113.1"

    def test_untrusted_peer_ignores_the_header(self) -> None:
        assert client_address("203.0.113.1", ["198.51.100.9"], PROXIES) == "203.0.113.1"

    def test_trusted_peer_gives_right_most_untrusted(self) -> None:
        xff = ["198.51.100.66, 198.51.100.9, 10.0.0.7"]
        assert client_address("10.0.0.2", xff, PROXIES) == "198.51.100.9"

    def test_several_header_lines_are_one_list(self) -> None:
        xff = ["198.51.100.66", "198.51.100.9"]
        assert client_address("10.0.0.2", xff, PROXIES) == "198.51.100.9"

    def test_trusted_peer_without_header_is_the_client(self) -> None:
        assert client_address("10.0.0.2", [], PROXIES) == "10.0.0.2"

    def test_garbage_hop_stops_at_the_nearest_proxy(self) -> None:
        assert client_address("10.0.0.2", ["198.51.100.9, not-an-ip"], PROXIES) == "10.0.0.2"

    @pytest.mark.parametrize(
        ("hop", "expected"),
        [
            ("198.51.100.9:4711", "198.51.100.9"),
            ("[2001:db8:1:2::5]:443", "2001:db8:1:2::/64"),
            ("::ffff:198.51.100.9", "198.51.100.9"),
        ],
    )
    def test_address_forms(self, hop: str, expected: str) -> None:
        assert client_address("10.0.0.2", [hop], PROXIES) == expected

    def test_ipv6_clients_count_per_64(self) -> None:
        a = client_address("2001:db8:1:2::1", [], [])
        b = client_address("2001:db8:1:2:ffff::9", [], [])
        assert a == b == "2001:db8:1:2::/64"
