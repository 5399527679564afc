"""Email addresses and CSV cells: normalization, a fast validity check, formula neutralizing."""

from __future__ import annotations

import re
import unicodedata

import email_validator

from launchkit.errors import InputError
from launchkit.files import CELL_TRIGGERS as _CELL_TRIGGERS
from launchkit.files import neutralize_cell

__all__ = ["fast_valid", "neutralize_cell", "normalize_email"]

# --- email addresses --------------------------------------------------------------------------

_LOCAL = r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_EMAIL = re.compile(rf"({_LOCAL})@((?:{_LABEL}\.)+[a-z]{{2,63}})")
_SPECIAL_SUFFIXES = tuple("." + name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)


def fast_valid(email: str) -> bool:
    """True when ``email`` (already trimmed and lowercased) is certainly valid and normalized.

    A strict ASCII subset of what email-validator accepts: dot-atom local part of
    ``[a-z0-9_+-]``, LDH labels without ``--`` in positions 3-4 (no IDNA A-labels),
    an alphabetic TLD, no special-use domain, RFC length limits. Anything else goes
    through email-validator (see ``tests/test_audience.py::test_fast_path_is_a_subset``).
    """
    match = _FAST_EMAIL.fullmatch(email)
    if match is None or len(email) > 254 or len(match.group(1)) > 64:
        return False
    domain = match.group(2)
    if len(domain) > 253 or ("." + domain).endswith(_SPECIAL_SUFFIXES):
        return False
    return "--" not in domain or not any(label[2:4] == "--" for label in domain.split("."))


def normalize_email(raw: str) -> str:
    """Trim, lowercase and IDNA-encode the domain; ``InputError`` says why an address is invalid."""
    email = raw.strip().lower()
    if fast_valid(email):
        return email
    try:
        return _slow_normalize(email)
    except ValueError as e:
        raise InputError(f'"{raw.strip()}" is not a valid email address: {e}') from None


def _slow_normalize(email: str) -> str:
    """email-validator's verdict on a trimmed, lowercased address; ``ValueError`` says why."""
    if not email:
        raise ValueError("it is empty.")
    try:
        valid = email_validator.validate_email(email, check_deliverability=False)
    except email_validator.EmailNotValidError as e:
        raise ValueError(str(e)) from None
    return f"{valid.local_part}@{valid.ascii_domain}"


# --- CSV cells ---------------------------------------------------------------------------------


def _unneutralize(value: str) -> str:
    return value[1:] if value[:1] == "'" and value[1:2] in _CELL_TRIGGERS and value[1:2] else value


def _header_key(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.strip().lstrip("\ufeff")).lower()
    return "".join(ch for ch in text if ch.isalnum() and ch.isascii())
