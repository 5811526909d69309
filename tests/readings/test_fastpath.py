"""Single-reading ingest skips the router: its answers must be the router's, case by case.

The shared app serves device-key POSTs with `app.readings.fastpath`; a second app on the same
servers and database is built without that fast route, so every request goes through FastAPI
and the documented route. Each case is sent to both, for two devices in the same state, with
the key in either header, and the answers compared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId

from tests.fixtures.readings import MakeDevice, TestDevice

RATE_LIMIT_HEADERS = ("ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining")


def key_header(device: TestDevice) -> dict[str, str]:
    return {"X-Device-Key": device.key}


def bearer(device: TestDevice) -> dict[str, str]:
    return {"Authorization": f"Bearer {device.key}"}


@pytest.fixture(params=[key_header, bearer], ids=["x-device-key", "bearer"])
def how(request: pytest.FixtureRequest) -> Callable[[TestDevice], dict[str, str]]:
    """The header a device sends its key in."""
    fn: Callable[[TestDevice], dict[str, str]] = request.param
    return fn


def shape(resp: httpx.Response) -> dict[str, Any]:
    """What a client sees, without values that differ from one request to the next."""
    body = resp.json()
    if isinstance(body, dict):
        body.pop("instance", None)
    return {
        "status": resp.status_code,
        "content-type": resp.headers.get("content-type"),
        "body": body,
        "rate-limit": [h for h in RATE_LIMIT_HEADERS if h in resp.headers],
        "replayed": resp.headers.get("idempotent-replayed"),
        "request-id": bool(resp.headers.get("x-request-id")),
        "www-authenticate": resp.headers.get("www-authenticate"),
    }


CASES: dict[str, tuple[Any, dict[str, str]]] = {
    "one reading": ({"metrics": {"temperature": 21.5}}, {}),
    "a batch": ({"readings": [{"metrics": {"temperature": 1}}, {"metrics": {"x": "s"}}]}, {}),
    "invalid reading": ({"metrics": {"temperature": "hot"}}, {}),
    "not json": (b"{nope", {}),
    "no readings": ({"readings": []}, {}),
}


class TestSameAnswers:
    @pytest.mark.parametrize("case", list(CASES))
    async def test_body_cases(
        self,
        client: httpx.AsyncClient,
        routed: httpx.AsyncClient,
        make_device: MakeDevice,
        how: Callable[[TestDevice], dict[str, str]],
        case: str,
    ) -> None:
        body, headers = CASES[case]
        answers = []
        for http in (client, routed):
            device = await make_device()
            kwargs: dict[str, Any] = (
                {"content": body} if isinstance(body, bytes) else {"json": body}
            )
            resp = await http.post(
                f"/api/v1/devices/{device.id}/readings",
                headers={**how(device), **headers, "Content-Type": "application/json"},
                **kwargs,
            )
            answers.append(shape(resp))
        assert answers[0] == answers[1]

    async def test_idempotent_replay(
        self,
        client: httpx.AsyncClient,
        routed: httpx.AsyncClient,
        make_device: MakeDevice,
        how: Callable[[TestDevice], dict[str, str]],
    ) -> None:
        answers = []
        for http in (client, routed):
            device = await make_device()
            for _ in range(2):
                resp = await http.post(
                    f"/api/v1/devices/{device.id}/readings",
                    json={"metrics": {"temperature": 3}},
                    headers={**how(device), "Idempotency-Key": "k-1"},
                )
            answers.append(shape(resp))
        assert answers[0] == answers[1]
        assert answers[0]["replayed"] == "true"

    async def test_over_the_product_limit(
        self,
        client: httpx.AsyncClient,
        routed: httpx.AsyncClient,
        make_device: MakeDevice,
        how: Callable[[TestDevice], dict[str, str]],
    ) -> None:
        answers = []
        for http in (client, routed):
            device = await make_device(ingest_limit_per_minute=1)
            for _ in range(2):
                resp = await http.post(
                    f"/api/v1/devices/{device.id}/readings",
                    json={"metrics": {"temperature": 3}},
                    headers=how(device),
                )
            answer = {**shape(resp), "policy": resp.headers["RateLimit-Policy"]}
            # Seconds until a request is admitted again depend on when the second one came.
            answer["body"].pop("retry_after")
            answer["body"]["detail"] = re.sub(r"\d+ s$", "N s", answer["body"]["detail"])
            answers.append(answer)
        assert answers[0] == answers[1]
        assert answers[0]["status"] == 429

    @pytest.mark.parametrize("target", ["other", "missing"])
    async def test_another_devices_id(
        self,
        client: httpx.AsyncClient,
        routed: httpx.AsyncClient,
        make_device: MakeDevice,
        how: Callable[[TestDevice], dict[str, str]],
        target: str,
    ) -> None:
        answers = []
        for http in (client, routed):
            device, other = await make_device(), await make_device()
            device_id = other.id if target == "other" else str(ObjectId())
            resp = await http.post(
                f"/api/v1/devices/{device_id}/readings",
                json={"metrics": {"temperature": 3}},
                headers=how(device),
            )
            answers.append(shape(resp))
        assert answers[0] == answers[1]
        assert answers[0]["status"] == 404

    async def test_unknown_key(
        self,
        client: httpx.AsyncClient,
        routed: httpx.AsyncClient,
        make_device: MakeDevice,
        how: Callable[[TestDevice], dict[str, str]],
    ) -> None:
        device = await make_device()
        fake = TestDevice(context=device.context, key="dk_" + "x" * 40)
        answers = []
        for http in (client, routed):
            resp = await http.post(
                f"/api/v1/devices/{device.id}/readings",
                json={"metrics": {"temperature": 3}},
                headers=how(fake),
            )
            answers.append(shape(resp))
        assert answers[0] == answers[1]
        assert answers[0]["status"] == 401

    async def test_counted_under_the_route_template(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        def posted(text: str) -> float:
            pattern = (
                r'^sensorhub_http_requests_total\{method="POST",'
                r'route="/api/v1/devices/\{device_id\}/readings",status="202"\} (\S+)$'
            )
            found = re.search(pattern, text, re.M)
            return float(found.group(1)) if found else 0.0

        device = await make_device()
        before = posted((await client.get("/metrics")).text)
        resp = await client.post(
            f"/api/v1/devices/{device.id}/readings",
            json={"metrics": {"temperature": 3}},
            headers=key_header(device),
        )
        assert resp.status_code == 202
        assert posted((await client.get("/metrics")).text) == before + 1
