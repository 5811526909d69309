"""The test harness's own servers answer like the real ones the app will talk to."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import httpx
import sentry_sdk

from tests.fixtures.servers import ManagedProcess, SentryEndpoint, SmtpSink


class TestFirebaseEmulator:
    async def test_sign_up_returns_an_id_token(self, firebase_emulator: ManagedProcess) -> None:
        url = (
            f"http://127.0.0.1:{firebase_emulator.port}"
            "/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"
        )
        async with httpx.AsyncClient() as http:
            response = await http.post(
                url, json={"email": "harness@example.com", "password": "secret123"}
            )
        assert response.status_code == 200
        assert response.json()["idToken"].count(".") == 2


class TestSmtpSink:
    def test_records_messages(self, smtp_sink: SmtpSink) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@x.test", "b@x.test", "hello"
        message.set_content("body")
        with smtplib.SMTP("127.0.0.1", smtp_sink.port, timeout=5) as smtp:
            smtp.send_message(message)
        assert smtp_sink.messages[-1]["Subject"] == "hello"


class TestSentryEndpoint:
    def test_records_envelopes(self, sentry_endpoint: SentryEndpoint) -> None:
        client = sentry_sdk.Client(dsn=sentry_endpoint.dsn, default_integrations=False)
        client.capture_event({"message": "harness check", "level": "info"})
        client.flush(timeout=5)
        events = [e for env in sentry_endpoint.envelopes for e in env.events()]
        assert any(e.get("message") == "harness check" for e in events)
