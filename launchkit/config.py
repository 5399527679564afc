"""Settings: one frozen dataclass, filled from CLI flag > environment > launchkit.toml > default.

Only this module reads the environment. Secrets (Stripe keys, SMTP URL with its password, the
signing key) come from the environment or from the 600-mode ``.launchkit_secret`` file in the
workspace, never from ``launchkit.toml``.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from launchkit.errors import ConfigError, WorkspaceNotFound

CONFIG_FILE = "launchkit.toml"
SECRET_FILE = ".launchkit_secret"  # noqa: S105 (a file name, not a secret)
DEFAULT_DB_FILE = "launchkit.db"
LANGUAGES = ("fr", "en")
ADDRESS_FORMS = ("vous", "tu")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """Parse ``90s``, ``15m``, ``12h`` or ``3d`` into a timedelta."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f'{what} "{text}" is not a duration like 15m, 12h or 3d.')
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_send_window(text: str) -> tuple[int, int]:
    """Parse ``08:00-21:00`` into (start minute, end minute) of the local day."""
    match = re.match(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$", str(text))
    if not match:
        raise ConfigError(f'send_window "{text}" must look like 08:00-21:00.')
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    if not (0 <= start < 24 * 60 and 0 < end <= 24 * 60):
        raise ConfigError(f'send_window "{text}" has an hour out of range.')
    return start, end


def parse_rate_limit(text: str) -> tuple[int, timedelta]:
    """Parse ``20/1m`` into (20, 1 minute); ``0`` means no limit."""
    if text.strip() == "0":
        return (0, timedelta(minutes=1))
    count, _, window = text.partition("/")
    if not count.strip().isdigit() or not window:
        raise ConfigError(f'web rate limit "{text}" must look like 20/1m (or 0 for no limit).')
    return (int(count), parse_duration(window, what="web rate limit window"))


def _check_rate_limit(value: Any) -> str:
    parse_rate_limit(str(value))
    return str(value).strip()


def _check_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f'"{value}" must be true or false.')
    return text in ("true", "1", "yes")


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f'Timezone "{name}" is not a known IANA zone (e.g. Europe/Paris).') from e
    return name


def _check_language(value: str) -> str:
    if value not in LANGUAGES:
        raise ConfigError(f'Language "{value}" is not supported; use one of: fr, en.')
    return value


def _check_address_form(value: str) -> str:
    if value not in ADDRESS_FORMS:
        raise ConfigError(f'Address form "{value}" is not supported; use tu or vous.')
    return value


def _check_reminder_days(value: Any) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 90:
        raise ConfigError(
            f'memberships.renewal_reminder_days "{value}" must be a whole number of days'
            " from 1 to 90."
        )
    return int(text)


def _check_currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ConfigError(f'Currency "{value}" is not an ISO 4217 code like EUR or USD.')
    return value.upper()


@dataclass(frozen=True)
class Setting:
    """One documented setting: where it lives in the toml, its env name, default and help."""

    name: str
    toml_key: str | None
    env: str | None
    default: Any
    help: str
    secret: bool = False
    parse: Callable[[Any], Any] = str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "name", "workspace.name", None, "My launch", "Name of the business or launch workspace."
    ),
    Setting(
        "timezone",
        "workspace.timezone",
        None,
        "Europe/Paris",
        "IANA timezone used to read and show launch times.",
        parse=_check_timezone,
    ),
    Setting(
        "currency",
        "workspace.currency",
        None,
        "EUR",
        "ISO currency of prices.",
        parse=_check_currency,
    ),
    Setting(
        "language",
        "workspace.language",
        None,
        "fr",
        "Language of pages and emails (fr or en).",
        parse=_check_language,
    ),
    Setting(
        "address_form",
        "workspace.address_form",
        None,
        "vous",
        'French pages and emails address the reader as "vous" or "tu" '
        "(transactional-fr/ or transactional-fr-tu/, launch-fr/ or launch-fr-tu/).",
        parse=_check_address_form,
    ),
    Setting("sender_name", "sender.name", None, "", "Display name in the From header."),
    Setting("sender_email", "sender.email", None, "", "Address in the From header."),
    Setting(
        "transactional_email",
        "sender.transactional_email",
        None,
        "",
        "From address of transactional mail (confirmation, delivery, receipt, access, dunning),"
        " e.g. orders@; empty: sender.email.",
    ),
    Setting(
        "dkim_selector",
        "sender.dkim_selector",
        None,
        "",
        "DKIM selector: with LAUNCHKIT_DKIM_PRIVATE_KEY, every message is signed for the"
        " From domain (publish the key at <selector>._domainkey.<domain>).",
    ),
    Setting(
        "dkim_private_key",
        None,
        "LAUNCHKIT_DKIM_PRIVATE_KEY",
        None,
        "DKIM private key (PEM text, or the path of a PEM file); env only.",
        secret=True,
    ),
    Setting(
        "postal_address",
        "sender.postal_address",
        None,
        "",
        "Postal address shown in every email footer (required by CAN-SPAM and EU rules).",
    ),
    Setting(
        "base_url",
        "web.base_url",
        "LAUNCHKIT_BASE_URL",
        "http://127.0.0.1:8000",
        "Public base URL of the web app, used in links inside emails.",
    ),
    Setting(
        "database_url",
        "database.url",
        "LAUNCHKIT_DATABASE_URL",
        None,
        "SQLAlchemy URL; default is the SQLite file launchkit.db in the workspace.",
    ),
    Setting(
        "email_backend",
        "email.backend",
        "LAUNCHKIT_EMAIL_BACKEND",
        None,
        "file (write .eml files to the outbox) or smtp; LAUNCHKIT_SMTP_URL alone selects smtp.",
    ),
    Setting(
        "smtp_url",
        None,
        "LAUNCHKIT_SMTP_URL",
        None,
        "smtp://user:pass@host:587?tls=starttls (or smtps://...:465); secret, env only.",
        secret=True,
    ),
    Setting(
        "send_window",
        "email.send_window",
        None,
        "08:00-21:00",
        "Local hours in which launch emails may be delivered (quiet hours outside).",
    ),
    Setting(
        "max_delay",
        "email.max_delay",
        None,
        "12h",
        "An email more than this late is skipped as stale instead of sent.",
        parse=lambda v: parse_duration(v, what="max_delay"),
    ),
    Setting(
        "rate_per_second",
        "email.rate_per_second",
        "LAUNCHKIT_RATE_PER_SECOND",
        None,
        "Maximum messages per second (0 = no limit); unset: 10 through a real relay, no limit"
        " for the file outbox and loopback SMTP.",
        parse=float,
    ),
    Setting(
        "rate_per_hour",
        "email.rate_per_hour",
        None,
        None,
        "Maximum messages per rolling hour, kept across restarts (0 = no limit); unset: 3000"
        " through a real relay, no limit for the file outbox and loopback SMTP.",
        parse=int,
    ),
    Setting(
        "warmup",
        "email.warmup",
        None,
        True,
        "Warm-up through a real relay: at most max(500, a fifth of the messages sent in the"
        " last 14 days) per hour; false turns it off.",
        parse=_check_bool,
    ),
    Setting(
        "max_send_errors",
        "email.max_send_errors",
        None,
        20,
        "Consecutive delivery failures after which a send pauses itself.",
        parse=int,
    ),
    Setting(
        "track_clicks",
        "email.track_clicks",
        None,
        True,
        "Send the links of launch emails through /c/TOKEN and count clicks per email;"
        " false: direct links, nothing recorded. No open pixel either way.",
        parse=_check_bool,
    ),
    Setting(
        "max_attempts",
        "email.max_attempts",
        None,
        5,
        "Delivery attempts for a temporary (4xx) failure before the send is marked failed.",
        parse=int,
    ),
    Setting(
        "stripe_api_key", None, "STRIPE_API_KEY", None, "Stripe secret key; env only.", secret=True
    ),
    Setting(
        "stripe_webhook_secret",
        None,
        "STRIPE_WEBHOOK_SECRET",
        None,
        "Stripe webhook signing secret (whsec_...); env only.",
        secret=True,
    ),
    Setting(
        "stripe_api_base",
        "stripe.api_base",
        "LAUNCHKIT_STRIPE_API_BASE",
        "https://api.stripe.com",
        "Base URL of the Stripe API (point at a local test server).",
    ),
    Setting(
        "checkout_grace",
        "stripe.checkout_grace",
        None,
        "15m",
        "How long after cart close the checkout still accepts buyers.",
        parse=lambda v: parse_duration(v, what="checkout_grace"),
    ),
    Setting(
        "secret_keys",
        None,
        "LAUNCHKIT_SECRET_KEY",
        None,
        "Signing key for links; env or the 600-mode .launchkit_secret file; "
        "extra lines in the file are older keys still accepted (rotation).",
        secret=True,
    ),
    Setting(
        "download_link_max_age",
        "web.download_link_max_age",
        None,
        "7d",
        "How long a signed download link stays valid.",
        parse=lambda v: parse_duration(v, what="download_link_max_age"),
    ),
    Setting(
        "confirm_link_max_age",
        "web.confirm_link_max_age",
        None,
        "7d",
        "How long a double opt-in confirmation link stays valid.",
        parse=lambda v: parse_duration(v, what="confirm_link_max_age"),
    ),
    Setting(
        "unsubscribe_link_max_age",
        "web.unsubscribe_link_max_age",
        None,
        "365d",
        "How long an unsubscribe link stays valid (at least 30 days, CAN-SPAM).",
        parse=lambda v: parse_duration(v, what="unsubscribe_link_max_age"),
    ),
    Setting(
        "web_rate_limit",
        "web.rate_limit",
        "LAUNCHKIT_WEB_RATE_LIMIT",
        "20/1m",
        "Form posts allowed per client IP in a sliding window, e.g. 20/1m (0 = no limit).",
        parse=_check_rate_limit,
    ),
    Setting(
        "templates_dir", None, None, None, "Folder of web page templates (workspace/templates)."
    ),
    Setting("emails_dir", None, None, None, "Folder of email sequences (workspace/emails)."),
    Setting(
        "stripe_automatic_tax",
        "stripe.automatic_tax",
        None,
        False,
        "Turn on Stripe Tax on Checkout (billing address and tax id collected).",
        parse=lambda v: parse_flag(v, what="stripe.automatic_tax"),
    ),
    Setting(
        "checkout_recovery_delay",
        "checkout.recovery_delay",
        None,
        "1h",
        "How long after an unfinished checkout its one recovery email goes out.",
        parse=lambda v: parse_duration(v, what="checkout.recovery_delay"),
    ),
    Setting(
        "renewal_reminder_days",
        "memberships.renewal_reminder_days",
        None,
        14,
        "Days before a yearly membership renews that the member gets the renewal reminder"
        " (several EU countries require one); 1 to 90.",
        parse=_check_reminder_days,
    ),
)


def parse_flag(value: Any, *, what: str) -> bool:
    """A toml boolean (or true/false, 1/0, yes/no as text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f'{what} "{value}" must be true or false.')


@dataclass(frozen=True)
class Settings:
    """Everything a launchkit command needs to know about its workspace."""

    workspace: Path
    name: str = "My launch"
    timezone: str = "Europe/Paris"
    currency: str = "EUR"
    language: str = "fr"
    address_form: str = "vous"
    sender_name: str = ""
    sender_email: str = ""
    transactional_email: str = ""
    dkim_selector: str = ""
    dkim_private_key: str | None = field(default=None, repr=False)
    postal_address: str = ""
    base_url: str = "http://127.0.0.1:8000"
    database_url: str = ""
    email_backend: str = "file"
    smtp_url: str | None = field(default=None, repr=False)
    send_window: str = "08:00-21:00"
    max_delay: timedelta = timedelta(hours=12)
    rate_per_second: float | None = None  # None: automatic (see sequences.ratelimit)
    rate_per_hour: int | None = None
    warmup: bool = True
    max_send_errors: int = 20
    max_attempts: int = 5
    track_clicks: bool = True
    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_api_base: str = "https://api.stripe.com"
    checkout_grace: timedelta = timedelta(minutes=15)
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    download_link_max_age: timedelta = timedelta(days=7)
    confirm_link_max_age: timedelta = timedelta(days=7)
    unsubscribe_link_max_age: timedelta = timedelta(days=365)
    web_rate_limit: str = "20/1m"
    templates_dir: Path = Path()
    emails_dir: Path = Path()
    stripe_automatic_tax: bool = False
    checkout_recovery_delay: timedelta = timedelta(hours=1)
    renewal_reminder_days: int = 14

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def outbox_dir(self) -> Path:
        return self.workspace / "outbox"

    @property
    def magnets_dir(self) -> Path:
        return self.workspace / "magnets"

    @property
    def secret_key(self) -> str:
        """The current signing key."""
        if not self.secret_keys:
            raise ConfigError("No signing key: set LAUNCHKIT_SECRET_KEY or run `launchkit init`.")
        return self.secret_keys[0]

    def public(self) -> dict[str, Any]:
        """Settings as plain values with secrets masked, for `config show`."""
        shown: dict[str, Any] = {}
        for spec in SETTINGS:
            value = getattr(self, spec.name)
            if spec.secret and value:
                value = "********"
            shown[spec.name] = str(value) if isinstance(value, Path | timedelta) else value
        return shown


def find_workspace(explicit: Path | None, env: Mapping[str, str], cwd: Path | None = None) -> Path:
    """Find the workspace: --workspace, then LAUNCHKIT_HOME, then cwd and its parents."""
    if explicit is not None:
        return _require_workspace(explicit, "--workspace")
    if env.get("LAUNCHKIT_HOME"):
        return _require_workspace(Path(env["LAUNCHKIT_HOME"]), "LAUNCHKIT_HOME")
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise WorkspaceNotFound(
        f"No launchkit workspace in {start} or its parents; run `launchkit init DIR` "
        "or pass --workspace."
    )


def _require_workspace(path: Path, origin: str) -> Path:
    if not (path / CONFIG_FILE).is_file():
        raise WorkspaceNotFound(f"{origin} points to {path}, which has no {CONFIG_FILE}.")
    return path.resolve()


def read_toml(workspace: Path) -> dict[str, Any]:
    """Read launchkit.toml, with a one-line error naming the file when it is malformed."""
    path = workspace / CONFIG_FILE
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    except FileNotFoundError as e:
        raise WorkspaceNotFound(f"{path} does not exist.") from e


def _toml_value(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def read_secret_keys(workspace: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    """Signing keys, newest first: LAUNCHKIT_SECRET_KEY, then the lines of .launchkit_secret."""
    keys: list[str] = []
    if env.get("LAUNCHKIT_SECRET_KEY"):
        keys.append(env["LAUNCHKIT_SECRET_KEY"])
    path = workspace / SECRET_FILE
    if path.is_file():
        check_secret_mode(path)
        keys += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return tuple(dict.fromkeys(keys))


def check_secret_mode(path: Path) -> None:
    """Refuse a secret file that group or others can read or write (like ssh does)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} is open to group or others (mode {mode:o}); run: chmod 600 {path}"
        )


def write_secret_key(workspace: Path, *, rotate: bool = False) -> None:
    """Create the signing key file (mode 600); with rotate, prepend a new key, keep old ones."""
    path = workspace / SECRET_FILE
    old = path.read_text().splitlines() if path.is_file() else []
    if old and not rotate:
        return
    lines = [secrets.token_urlsafe(48), *[line for line in old if line.strip()][:4]]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    path.chmod(0o600)


def load_settings(
    workspace: Path,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings for a workspace. Precedence: overrides > env > launchkit.toml > default."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    data = read_toml(workspace)
    values: dict[str, Any] = {"workspace": workspace}
    for spec in SETTINGS:
        raw = _raw_value(spec, data, env, overrides)
        if raw is not None:
            values[spec.name] = spec.parse(raw)
    values["secret_keys"] = read_secret_keys(workspace, env)
    values.setdefault("database_url", f"sqlite:///{workspace / DEFAULT_DB_FILE}")
    values["database_url"] = resolve_sqlite_path(values["database_url"], workspace)
    values.setdefault("email_backend", "smtp" if values.get("smtp_url") else "file")
    values.setdefault("templates_dir", workspace / "templates")
    values.setdefault("emails_dir", workspace / "emails")
    _validate(values)
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})


def resolve_sqlite_path(url: str, workspace: Path) -> str:
    """Make a relative SQLite file path relative to the workspace, not the current directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(workspace / url[len(prefix) :])
    return url


def _raw_value(
    spec: Setting, data: Mapping[str, Any], env: Mapping[str, str], overrides: Mapping[str, Any]
) -> Any:
    if spec.name in overrides:
        return overrides[spec.name]
    if spec.env and env.get(spec.env):
        return env[spec.env]
    if spec.toml_key:
        return _toml_value(data, spec.toml_key)
    return None


def _validate(values: Mapping[str, Any]) -> None:
    if values["email_backend"] not in ("file", "smtp"):
        raise ConfigError(f'email backend "{values["email_backend"]}" must be file or smtp.')
    if values["email_backend"] == "smtp" and not values.get("smtp_url"):
        raise ConfigError("The smtp email backend needs LAUNCHKIT_SMTP_URL.")
    parse_send_window(values.get("send_window", "08:00-21:00"))


def settings_for_test(workspace: Path, **overrides: Any) -> Settings:
    """Settings without reading env or toml (for tests and the library API)."""
    base = {
        "workspace": workspace,
        "database_url": f"sqlite:///{workspace / DEFAULT_DB_FILE}",
        "templates_dir": workspace / "templates",
        "emails_dir": workspace / "emails",
        "secret_keys": ("test-signing-key",),
    }
    base.update(overrides)
    return Settings(**base)
