"""The per-run shortcuts that remain in the delivery engine keep its results: directly built
tokens and the template environment kept across runs."""

from __future__ import annotations

from launchkit import render
from launchkit.tokens import Purpose, _serializer, make_token, read_token
from tests.test_sequences import _launch, add_subscribers, send_rows, utc, world  # noqa: F401


def test_tokens_are_what_itsdangerous_makes(settings):
    for purpose in Purpose:
        for payload in ({"s": 5}, {"s": 123456, "e": 7}, {"t": "é" * 60}):
            for _ in range(3):  # the same second
                ours = make_token(settings, purpose, payload)
                theirs = _serializer(settings, purpose).dumps(payload)
                if ours == theirs:
                    break
            assert ours == theirs
            assert read_token(settings, purpose, ours) == payload


def test_shared_environment_is_kept_until_a_template_changes(settings):
    first = render.shared_environment(settings)
    assert render.shared_environment(settings) is first
    base = settings.emails_dir / "base.html"
    if not base.exists():
        base.write_text(
            (render.starter_dir("emails") / "base.html").read_text(encoding="utf-8"),
            encoding="utf-8",
        )
    else:
        base.write_text(base.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert render.shared_environment(settings) is not first
