"""Rendering outbox emails from Jinja2 templates and sending them over SMTP."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, TemplateNotFound, select_autoescape

from app.core.config import Settings

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATES = ("welcome", "share_invite", "alert_notification", "alert_digest")


class PermanentEmailError(Exception):
    """Retrying cannot help (unknown template, address or content refused): mark it failed."""


class TransientEmailError(Exception):
    """The relay is away or busy (connection refused, timeout, 4xx): retry later."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """Subject and both parts of one email."""

    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # Autoescape the HTML parts only: the subject and plain-text part must show `<` as is.
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        keep_trailing_newline=False,
    )


def render(template: str, context: dict[str, Any]) -> RenderedEmail:
    """Render the subject, text and HTML parts of a named template."""
    if template not in TEMPLATES:
        raise PermanentEmailError(f"unknown email template {template!r}")
    env = _environment()
    try:
        subject = env.get_template(f"{template}/subject.txt").render(context)
        text = env.get_template(f"{template}/body.txt").render(context)
        html = env.get_template(f"{template}/body.html").render(context)
    except TemplateNotFound as exc:
        raise PermanentEmailError(f"template part missing: {exc.name}") from None
    # A subject is one header line: newlines in the context must not inject headers.
    subject = " ".join(subject.split())
    return RenderedEmail(subject=subject, text=text.strip() + "\n", html=html)


def build_message(
    settings: Settings, *, to: str, email: RenderedEmail, message_id: str
) -> EmailMessage:
    """A multipart/alternative message (text first, HTML preferred) with a stable Message-ID."""
    msg = EmailMessage()
    msg["Subject"] = email.subject
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Date"] = formatdate(usegmt=True)
    # Stable per outbox entry, so a receiving system can drop a duplicate if one ever slips
    # through (worker crash between sending and recording it).
    msg["Message-ID"] = f"<{message_id}@sensorhub>"
    msg.set_content(email.text)
    msg.add_alternative(email.html, subtype="html")
    return msg


def _connect(settings: Settings) -> smtplib.SMTP:
    timeout = settings.smtp_timeout_s
    if settings.smtp_security == "ssl":
        return smtplib.SMTP_SSL(
            settings.smtp_host,
            settings.smtp_port,
            timeout=timeout,
            context=ssl.create_default_context(),
        )
    smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    if settings.smtp_security == "starttls":
        smtp.starttls(context=ssl.create_default_context())
    return smtp


def send(settings: Settings, msg: EmailMessage) -> None:
    """Deliver one message; raises TransientEmailError or PermanentEmailError on failure."""
    try:
        with _connect(settings) as smtp:
            if settings.smtp_username:
                password = settings.smtp_password
                smtp.login(settings.smtp_username, password.get_secret_value() if password else "")
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            raise TransientEmailError(f"recipient deferred ({codes[0]})") from None
        # The message names the addresses; keep it out of logs and error reports.
        raise PermanentEmailError(f"recipient refused ({codes[0] if codes else '?'})") from None
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientEmailError(f"SMTP {exc.smtp_code}") from None
        raise PermanentEmailError(f"SMTP {exc.smtp_code}") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentEmailError(f"SMTP relay does not support: {exc}") from None
    except OSError as exc:  # refused, reset, timeout, DNS, TLS: the relay may come back
        raise TransientEmailError(type(exc).__name__) from None
