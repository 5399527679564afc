"""Signed, expiring tokens for links (confirm, download, unsubscribe, checkout prefill).

Each purpose has its own salt, so a token made for one purpose is refused for another. Keys
rotate: ``Settings.secret_keys`` lists the current key first and older keys after it; tokens
signed with an older key stay valid until they expire.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from launchkit.config import Settings
from launchkit.errors import LaunchkitError


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    DOWNLOAD = "download"
    UNSUBSCRIBE = "unsubscribe"
    CHECKOUT = "checkout"


class TokenExpired(LaunchkitError):
    "The link is genuine but too old."


class TokenInvalid(LaunchkitError):
    "The link was tampered with, made for another purpose, or signed with an unknown key."


def max_age(settings: Settings, purpose: Purpose) -> timedelta:
    """How long a token of this purpose stays valid."""
    return {
        Purpose.CONFIRM: settings.confirm_link_max_age,
        Purpose.DOWNLOAD: settings.download_link_max_age,
        Purpose.UNSUBSCRIBE: settings.unsubscribe_link_max_age,
        Purpose.CHECKOUT: settings.unsubscribe_link_max_age,
    }[purpose]


def _serializer(settings: Settings, purpose: Purpose) -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and accepts all of them
    keys = list(reversed(settings.secret_keys))
    if not keys:
        raise LaunchkitError("No signing key: set LAUNCHKIT_SECRET_KEY or run `launchkit init`.")
    return URLSafeTimedSerializer(keys, salt=f"launchkit.{purpose.value}")


def make_token(settings: Settings, purpose: Purpose, payload: dict[str, Any]) -> str:
    """Sign ``payload`` for ``purpose``."""
    return _serializer(settings, purpose).dumps(payload)


def read_token(
    settings: Settings, purpose: Purpose, token: str, *, now_ts: float | None = None
) -> dict[str, Any]:
    """Verify and decode a token; raises TokenExpired or TokenInvalid."""
    serializer = _serializer(settings, purpose)
    age = int(max_age(settings, purpose).total_seconds())
    try:
        if now_ts is None:
            data = serializer.loads(token, max_age=age)
        else:
            data, signed_at = serializer.loads(token, return_timestamp=True)
            if now_ts - signed_at.timestamp() > age:
                raise TokenExpired("This link has expired.")
    except SignatureExpired as e:
        raise TokenExpired("This link has expired.") from e
    except BadSignature as e:
        raise TokenInvalid("This link is not valid.") from e
    if not isinstance(data, dict):
        raise TokenInvalid("This link is not valid.")
    return data


def link(settings: Settings, path: str, purpose: Purpose, payload: dict[str, Any]) -> str:
    """Absolute URL ``{base_url}{path}/{token}``, e.g. link(s, "/u", Purpose.UNSUBSCRIBE, ...)."""
    return f"{settings.base_url.rstrip('/')}{path}/{make_token(settings, purpose, payload)}"


def unsubscribe_url(settings: Settings, subscriber_id: int, email_id: int | None = None) -> str:
    """The signed unsubscribe link put in every marketing email."""
    payload: dict[str, Any] = {"s": subscriber_id}
    if email_id is not None:
        payload["e"] = email_id
    return link(settings, "/u", Purpose.UNSUBSCRIBE, payload)
