"""Signed tokens: purpose separation, expiry, tampering, key rotation."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from launchkit.config import settings_for_test
from launchkit.tokens import Purpose, TokenExpired, TokenInvalid, make_token, read_token


def test_roundtrip_and_purpose_separation(tmp_path: Path) -> None:
    s = settings_for_test(tmp_path)
    token = make_token(s, Purpose.DOWNLOAD, {"s": 7, "m": 2})
    assert read_token(s, Purpose.DOWNLOAD, token) == {"s": 7, "m": 2}
    with pytest.raises(TokenInvalid):
        read_token(s, Purpose.UNSUBSCRIBE, token)
    with pytest.raises(TokenInvalid):
        read_token(s, Purpose.DOWNLOAD, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])


def test_expiry(tmp_path: Path) -> None:
    s = settings_for_test(tmp_path)
    token = make_token(s, Purpose.DOWNLOAD, {"s": 1})
    later = time.time() + s.download_link_max_age.total_seconds() + 5
    with pytest.raises(TokenExpired):
        read_token(s, Purpose.DOWNLOAD, token, now_ts=later)
    assert read_token(
        s,
        Purpose.UNSUBSCRIBE,
        make_token(s, Purpose.UNSUBSCRIBE, {"s": 1}),
        now_ts=time.time() + 31 * 86400,
    ) == {"s": 1}


def test_rotation_keeps_old_tokens(tmp_path: Path) -> None:
    old = settings_for_test(tmp_path, secret_keys=("old-key",))
    token = make_token(old, Purpose.UNSUBSCRIBE, {"s": 3})
    rotated = replace(old, secret_keys=("new-key", "old-key"))
    assert read_token(rotated, Purpose.UNSUBSCRIBE, token) == {"s": 3}
    fresh = make_token(rotated, Purpose.UNSUBSCRIBE, {"s": 4})
    with pytest.raises(TokenInvalid):
        read_token(old, Purpose.UNSUBSCRIBE, fresh)
    dropped = replace(old, secret_keys=("new-key",))
    with pytest.raises(TokenInvalid):
        read_token(dropped, Purpose.UNSUBSCRIBE, token)


def test_short_payloads_signed_uncompressed_long_ones_compressed(tmp_path: Path) -> None:
    """Send runs sign two short payloads per message: those skip zlib (a leading "." would
    mark a compressed payload); a long repetitive one is compressed as itsdangerous would.
    Both forms are read back, by ``read_token`` and by itsdangerous itself."""
    from itsdangerous import URLSafeTimedSerializer

    from launchkit.tokens import COMPRESS_FROM

    s = settings_for_test(tmp_path)
    short = {"s": 1111111111111, "e": 1111111}
    long = {"s": 1, "note": "a" * COMPRESS_FROM}
    for payload, compressed in ((short, False), (long, True)):
        token = make_token(s, Purpose.UNSUBSCRIBE, payload)
        assert token.startswith(".") is compressed
        assert read_token(s, Purpose.UNSUBSCRIBE, token) == payload
        serializer = URLSafeTimedSerializer(s.secret_keys[0], salt="launchkit.unsubscribe")
        assert serializer.loads(token) == payload
