"""The journeys a new operator makes in the console, in real Chromium against the real stack."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from playwright.async_api import Browser, Page, WebSocketRoute, expect

from app.core.config import Settings
from tests.browser.conftest import ARTIFACTS
from tests.fixtures.identities import PASSWORD, MakeUser
from tests.fixtures.servers import local_http

PHONE = {"width": 375, "height": 740}


def _email() -> str:
    return f"op-{uuid.uuid4().hex[:10]}@example.com"


async def _open(browser: Browser, url: str, errors: list[str]) -> Page:
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{url}/console/")
    return page


async def _sign_up(page: Page, email: str) -> None:
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible(timeout=15_000)


async def _create_fleet(page: Page, url: str) -> dict[str, str]:
    """Folder, product (with a set_interval command) and device through the Create page."""
    names = {k: f"{k}-{uuid.uuid4().hex[:6]}" for k in ("folder", "product", "device")}
    await page.goto(f"{url}/console/#/new")
    await page.locator("input[name=folder_name]").fill(names["folder"])
    await page.locator("#create-folder").click()
    await expect(page.locator(".flash.ok")).to_contain_text(names["folder"])
    await page.locator("input[name=product_name]").fill(names["product"])
    await page.locator("input[name=sku]").fill(f"SKU-{uuid.uuid4().hex[:6]}")
    await page.locator("#create-product").click()
    await expect(page.locator(".flash.ok")).to_contain_text(names["product"])
    await page.locator("input[name=device_name]").fill(names["device"])
    await page.locator("input[name=serial]").fill(f"SN-{uuid.uuid4().hex[:8]}")
    await page.locator("select[name=product_id]").select_option(label=names["product"])
    await page.locator("select[name=device_folder]").select_option(label=names["folder"])
    await page.locator("#create-device").click()
    key_box = page.locator("#device-key")
    await expect(key_box).to_have_text(re.compile(r"^dk_"), timeout=10_000)
    await expect(page.locator(".key .warning")).to_contain_text("shown once")
    names["key"] = (await key_box.text_content() or "").strip()
    href = await page.locator("#open-device").get_attribute("href") or ""
    names["device_id"] = href.rsplit("/", 1)[-1]
    return names


async def _live_events(page: Page, channel: str) -> int:
    """How many events of `channel` the console's WebSocket has delivered so far."""
    return int(await page.evaluate(f"window.sensorhubLive?.byChannel['{channel}'] ?? 0"))


async def _chart(page: Page) -> dict[str, Any]:
    data: dict[str, Any] = await page.evaluate("window.sensorhubChart ?? null") or {}
    return data


async def _fleet_count_reaches(page: Page, url: str, label: str, expected: str) -> None:
    """The fleet page shows `expected` for `label`. Statistics are shared by scope for up to
    STATS_CACHE_S (5 s, Settings default), so a count asked for while the fleet was still
    being created may be served that long: open the page again until it is past."""
    deadline = time.monotonic() + Settings.model_fields["stats_cache_s"].default + 2
    count = page.locator(f"[data-count={label}] strong")
    while True:
        try:
            await expect(count).to_have_text(expected, timeout=1_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await page.goto(f"{url}/console/#/alarms")
        await page.goto(f"{url}/console/#/")


class TestOperatorJourney:
    async def test_sign_up_create_post_watch_command(
        self, browser: Browser, console_api: str
    ) -> None:
        errors: list[str] = []
        page = await _open(browser, console_api, errors)
        await _sign_up(page, _email())
        fleet = await _create_fleet(page, console_api)
        await page.screenshot(path=ARTIFACTS / "journey-create.png", full_page=True)

        await page.locator("#open-device").click()
        await expect(page.locator("#latest")).to_contain_text("No readings yet", timeout=10_000)
        # The page follows the device over the WebSocket (no polling while it is up).
        await page.wait_for_function(
            "window.sensorhubLive?.state === 'live' && window.sensorhubLive.subscriptions >= 3",
            timeout=10_000,
        )
        await page.wait_for_timeout(200)  # let the subscriptions be confirmed
        events_before = await _live_events(page, "device.latest")
        device = {"X-Device-Key": fleet["key"]}
        async with local_http(f"{console_api}/api/v1", timeout=30) as api:
            values = [20.5, 21.25, 22.75]
            resp = await api.post(
                f"/devices/{fleet['device_id']}/readings",
                json={"readings": [{"metrics": {"temperature": v}} for v in values]},
                headers=device,
            )
            assert resp.status_code == 202, resp.text
            posted = time.monotonic()
            # The newest value shows within 2 s, without a reload.
            await expect(page.locator("[data-metric=temperature]")).to_contain_text(
                "22.75", timeout=2_000
            )
            assert time.monotonic() - posted < 2.0
            assert await _live_events(page, "device.latest") > events_before, "no live event"
            # The chart was given the posted values (not only drawn a canvas).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chart = await _chart(page)
                if sorted(v for v in chart.get("series", {}).get("temperature", []) if v) == values:
                    break
                await asyncio.sleep(0.1)
            assert chart["mode"] == "raw"
            assert sorted(chart["series"]["temperature"]) == values
            await page.screenshot(path=ARTIFACTS / "journey-device.png", full_page=True)

            # A command from the generated form reaches `successful` when the device answers.
            await page.locator("input[name=param-seconds]").fill("30")
            await page.locator("#send-command").click()
            await expect(page.locator("#command-state")).to_contain_text("set_interval")
            polled = await api.get(
                f"/devices/{fleet['device_id']}/commands/next", params={"wait": 10}, headers=device
            )
            assert polled.status_code == 200, polled.text
            delivery = polled.json()
            assert delivery["params"] == {"seconds": 30}
            events_before = await _live_events(page, "device.commands")
            answered = await api.post(
                f"/devices/{fleet['device_id']}/commands/{delivery['id']}/result",
                json={"delivery_id": delivery["delivery_id"], "status": "successful"},
                headers=device,
            )
            assert answered.status_code in (200, 202), answered.text
            await expect(page.locator("#command-state")).to_have_attribute(
                "data-state", "successful", timeout=5_000
            )
            assert await _live_events(page, "device.commands") > events_before
            assert await page.evaluate("window.sensorhubLive.state") == "live"
            await page.screenshot(path=ARTIFACTS / "journey-command.png", full_page=True)

            # A heartbeat reporting an error: status and detail refresh without a reload.
            beat = await api.post(
                f"/devices/{fleet['device_id']}/heartbeat",
                json={"status": "error", "detail": {"battery": 3.05}},
                headers=device,
            )
            assert beat.status_code == 200, beat.text
            await expect(page.locator("h1[data-status=error]")).to_be_visible(timeout=6_000)
            await expect(page.locator("#heartbeat [data-field=detail]")).to_contain_text("3.05")
            await expect(page.locator("#heartbeat [data-field=reported]")).to_have_text("error")

            # The fleet's status dot follows the device live (folder.devices).
            await page.goto(f"{console_api}/console/#/")
            await _fleet_count_reaches(page, console_api, "devices", "1")
            await expect(page.locator("#device-list")).to_contain_text(fleet["device"])
            row = page.locator(f"#device-list li[data-device='{fleet['device_id']}']")
            await expect(row.locator(".dot.error")).to_be_visible()
            await page.wait_for_function(
                "window.sensorhubLive?.byChannel['folder.devices'] >= 1", timeout=10_000
            )
            beat = await api.post(
                f"/devices/{fleet['device_id']}/heartbeat", json={"status": "ok"}, headers=device
            )
            assert beat.status_code == 200, beat.text
            await expect(row.locator(".dot.online")).to_be_visible(timeout=6_000)
        await page.screenshot(path=ARTIFACTS / "journey-fleet.png", full_page=True)
        assert errors == []


class TestSharing:
    async def test_shared_folder_shows_its_device_to_the_second_user(
        self, browser: Browser, console_api: str, make_user: MakeUser
    ) -> None:
        errors: list[str] = []
        owner = await _open(browser, console_api, errors)
        await _sign_up(owner, _email())
        fleet = await _create_fleet(owner, console_api)
        # A verified address the API already knows: the share is a grant at once.
        bob_user = await make_user(email_verified=True)
        bob = bob_user.email
        async with local_http(f"{console_api}/api/v1") as api:
            assert (await api.get("/auth/me", headers=bob_user.headers)).status_code == 200
        await owner.goto(f"{console_api}/console/#/")
        await owner.get_by_role("link", name="share").first.click()
        await owner.locator("input[name=share_email]").fill(bob)
        await owner.locator("#share").click()
        await expect(owner.locator(".flash.ok")).to_contain_text(bob)
        await owner.screenshot(path=ARTIFACTS / "journey-share.png", full_page=True)

        other = await _open(browser, console_api, errors)
        await other.get_by_label("Email").fill(bob)
        await other.get_by_label("Password").fill(PASSWORD)
        await other.get_by_role("button", name="Sign in", exact=True).click()
        await expect(other.locator("#device-list")).to_contain_text(fleet["device"], timeout=15_000)
        await other.screenshot(path=ARTIFACTS / "journey-shared.png", full_page=True)
        assert errors == []


class TestAlarms:
    async def test_rule_raises_an_alarm_that_the_operator_acknowledges(
        self, browser: Browser, console_api: str
    ) -> None:
        errors: list[str] = []
        page = await _open(browser, console_api, errors)
        await _sign_up(page, _email())
        fleet = await _create_fleet(page, console_api)

        # A threshold rule on the device, from the Alarms page's rule editor.
        await page.get_by_role("link", name="Alarms", exact=True).click()
        await expect(page.get_by_role("heading", name="Alarms", exact=True)).to_be_visible()
        await page.locator("input[name=rule_name]").fill("Too warm")
        await page.locator("select[name=scope_type]").select_option("device")
        await page.locator("select[name=scope_id]").select_option(label=fleet["device"])
        await page.locator("select[name=rule_severity]").select_option("critical")
        await page.locator("input[name=cond-metric]").fill("temperature")
        await page.locator("select[name=cond-op]").select_option(">")
        await page.locator("input[name=cond-value]").fill("30")
        # A refused rule reads as the API's problem, field by field.
        await page.locator("select[name=cond-op]").select_option("==")
        await page.locator("input[name=cond-hysteresis]").fill("1")
        await page.locator("#save-rule").click()
        await expect(page.locator(".flash.error")).to_contain_text("hysteresis applies to")
        # Chromium logs the refused request itself; that one is expected.
        errors[:] = [e for e in errors if "status of 422" not in e]
        await page.locator("select[name=cond-op]").select_option(">")
        await page.locator("input[name=cond-hysteresis]").fill("")
        await page.locator("#save-rule").click()
        await expect(page.locator(".flash.ok")).to_contain_text("Too warm")
        await expect(page.locator("#rule-list")).to_contain_text("temperature > 30")

        # The device posts a reading over it; its page shows the alarm without a reload.
        await page.goto(f"{console_api}/console/#/device/{fleet['device_id']}")
        await expect(page.locator("#device-alarms")).to_contain_text("No alarms", timeout=10_000)
        device = {"X-Device-Key": fleet["key"]}
        async with local_http(f"{console_api}/api/v1", timeout=30) as api:
            resp = await api.post(
                f"/devices/{fleet['device_id']}/readings",
                json={"readings": [{"metrics": {"temperature": 35.5}}]},
                headers=device,
            )
            assert resp.status_code == 202, resp.text
            row = page.locator("#device-alarms tr[data-status=active]")
            await expect(row).to_contain_text("Too warm", timeout=10_000)
            await expect(row).to_contain_text("35.5")
            await expect(row).to_have_attribute("data-acknowledged", "false")

            # The Alarms page lists it (active, not acknowledged) across the fleet.
            await page.get_by_role("link", name="Alarms", exact=True).click()
            await page.locator("select[name=acknowledged]").select_option("false")
            await page.locator("select[name=severity]").select_option("critical")
            await page.get_by_role("button", name="Filter").click()
            fleet_row = page.locator("#alarm-list tr[data-status=active]")
            await expect(fleet_row).to_contain_text(fleet["device"])
            await page.screenshot(path=ARTIFACTS / "journey-alarms.png", full_page=True)
            await page.go_back()

            # Acknowledge it on the device page: the page and the API both say so.
            await page.get_by_role("button", name="Acknowledge: Too warm").click()
            await expect(page.locator(".flash.ok")).to_contain_text("acknowledged")
            row = page.locator("#device-alarms tr[data-status=active]")
            await expect(row).to_have_attribute("data-acknowledged", "true")
            await expect(row.locator(".state")).to_have_text("active, acknowledged")
            alarms = await api.get("/alarms", params={"status": "active"}, headers=device)
            assert alarms.status_code == 200, alarms.text
            [alarm] = alarms.json()["items"]
            assert alarm["rule_name"] == "Too warm"
            assert alarm["acknowledged"] is True
            assert alarm["acknowledged_by"]
            await page.screenshot(path=ARTIFACTS / "journey-alarm-ack.png", full_page=True)

            # Clearing it by hand leaves no Clear button; the API says cleared.
            await page.get_by_role("button", name="Clear: Too warm").click()
            await expect(page.locator("#device-alarms tr[data-status=cleared]")).to_have_count(1)
            cleared = await api.get("/alarms", params={"status": "cleared"}, headers=device)
            assert [a["id"] for a in cleared.json()["items"]] == [alarm["id"]]

        # Rule editing on the Alarms page: edit, disable, enable, delete.
        await page.get_by_role("link", name="Alarms", exact=True).click()
        rules = page.locator("#rule-list")
        await page.get_by_role("button", name="Edit rule Too warm").click()
        await expect(page.locator("#rule-form-title")).to_have_text("Edit rule Too warm")
        await expect(page.locator("select[name=scope_id]")).to_be_disabled()
        await page.locator("input[name=cond-value]").fill("40")
        await page.locator("input[name=rule_name]").fill("Much too warm")
        await page.locator("#save-rule").click()
        await expect(rules).to_contain_text("Much too warm")
        await expect(rules).to_contain_text("temperature > 40")
        await page.get_by_role("button", name="Disable rule Much too warm").click()
        await expect(rules).to_contain_text("(disabled)")
        await page.get_by_role("button", name="Enable rule Much too warm").click()
        await expect(rules).not_to_contain_text("(disabled)")
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.get_by_role("button", name="Delete rule Much too warm").click()
        await expect(rules).to_contain_text("No rules yet")
        assert errors == []


class TestGoogleSignIn:
    async def test_google_account_through_the_emulator(
        self, browser: Browser, console_api: str
    ) -> None:
        errors: list[str] = []
        page = await _open(browser, console_api, errors)
        email = _email()
        await page.get_by_role("button", name="Sign in with Google").click()
        # Development's stand-in for Google's account chooser (the SDK's popup needs Google's
        # gapi script, which the console does not load): any Google account by its email.
        await expect(page.get_by_role("heading", name="Choose a Google account")).to_be_visible()
        await page.get_by_label("Google email").fill(email)
        await page.get_by_label("Name (optional)").fill("Grace Operator")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("heading", name="Fleet")).to_be_visible(timeout=15_000)
        await expect(page.locator(".who")).to_have_text(email)
        # The API takes the Google user's ID token; signing in again is the same account.
        await expect(page.locator("[data-count=devices] strong")).to_have_text("0")
        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_role("button", name="Sign in with Google").click()
        await page.get_by_label("Google email").fill(email)
        await page.get_by_role("button", name="Continue").click()
        await expect(page.locator(".who")).to_have_text(email)
        await page.screenshot(path=ARTIFACTS / "journey-google.png", full_page=True)
        assert errors == []


class TestLiveFallback:
    async def test_polls_while_the_socket_is_down_then_goes_live_again(
        self, browser: Browser, console_api: str
    ) -> None:
        errors: list[str] = []
        page = await _open(browser, console_api, errors)
        sockets: list[WebSocketRoute] = []
        blocked = False

        async def through(ws: WebSocketRoute) -> None:
            if blocked:
                await ws.close(code=1012, reason="test: server restarting")
                return
            sockets.append(ws)
            ws.connect_to_server()

        await page.route_web_socket(re.compile(r"/api/v1/ws$"), through)
        await _sign_up(page, _email())
        fleet = await _create_fleet(page, console_api)
        await page.locator("#open-device").click()
        await page.wait_for_function("window.sensorhubLive?.state === 'live'", timeout=10_000)

        # The socket drops and stays down: the page polls and still shows new values.
        blocked = True
        for ws in sockets:
            await ws.close(code=1012, reason="test: server restarting")
        await page.wait_for_function("window.sensorhubLive.state !== 'live'", timeout=5_000)
        live_events = await _live_events(page, "device.latest")
        async with local_http(f"{console_api}/api/v1", timeout=30) as api:
            resp = await api.post(
                f"/devices/{fleet['device_id']}/readings",
                json={"metrics": {"temperature": 18.5}},
                headers={"X-Device-Key": fleet["key"]},
            )
            assert resp.status_code == 202, resp.text
            await expect(page.locator("[data-metric=temperature]")).to_contain_text(
                "18.5", timeout=3_000
            )
            assert await _live_events(page, "device.latest") == live_events

            # The server is back: the page reconnects (with backoff) and follows live again.
            blocked = False
            await page.wait_for_function("window.sensorhubLive.state === 'live'", timeout=20_000)
            await page.wait_for_timeout(200)  # the subscriptions are confirmed
            resp = await api.post(
                f"/devices/{fleet['device_id']}/readings",
                json={"metrics": {"temperature": 19.25}},
                headers={"X-Device-Key": fleet["key"]},
            )
            assert resp.status_code == 202, resp.text
            await expect(page.locator("[data-metric=temperature]")).to_contain_text(
                "19.25", timeout=2_000
            )
            assert await _live_events(page, "device.latest") > live_events
        assert errors == []
