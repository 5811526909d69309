"""Email templates: subject, text and HTML parts; HTML escaped; subjects stay one line."""

from __future__ import annotations

import pytest

from app.emails import mailer


class TestRender:
    @pytest.mark.parametrize("template", mailer.TEMPLATES)
    def test_every_template_has_three_parts(self, template: str) -> None:
        email = mailer.render(template, {})
        assert email.subject
        assert email.text.strip()
        assert email.html.lstrip().startswith("<!doctype html>")

    def test_html_is_escaped_and_text_is_not(self) -> None:
        email = mailer.render("welcome", {"name": "<script>x</script>"})
        assert "&lt;script&gt;" in email.html
        assert "<script>" not in email.html
        assert "Hello <script>x</script>," in email.text

    def test_newlines_cannot_inject_headers_through_the_subject(self) -> None:
        email = mailer.render("welcome", {"name": "Ada\r\nBcc: victim@example.com"})
        assert "\n" not in email.subject
        assert "\r" not in email.subject

    def test_unknown_template_is_a_permanent_error(self) -> None:
        with pytest.raises(mailer.PermanentEmailError):
            mailer.render("../../etc/passwd", {})
