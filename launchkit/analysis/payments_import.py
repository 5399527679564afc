"""Import a Stripe dashboard "unified payments" CSV export as orders of a launch.

Each captured, non-failed row becomes one pay-in-full order whose ``external_id`` is the
Stripe id (``ch_...``/``py_...``), so re-importing the same or a newer export updates the
orders instead of duplicating them. Buyers are matched to subscribers by normalized email;
unmatched buyers still get an order (``subscriber_id`` NULL, ``email`` set) and are listed.
Amounts are decimal strings in major units, converted to minor units exactly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.audience import normalize_email
from launchkit.errors import InputError
from launchkit.launches import get_launch
from launchkit.models import Order, OrderStatus, Subscriber

REQUIRED = ("id", "Created date (UTC)", "Amount", "Currency", "Customer Email")
SKIPPED_STATUSES = {"failed", "canceled", "cancelled", "blocked", "uncaptured", "incomplete"}
ZERO_DECIMAL = set("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d")


@dataclass
class PaymentRow:
    """One usable row of the export."""

    line: int
    external_id: str
    created: datetime
    email: str
    currency: str
    amount_cents: int
    refunded_cents: int
    fee_cents: int | None
    description: str


def to_minor_units(text: str, currency: str, *, where: str) -> int:
    """``"1,497.00"`` in ``currency`` -> 149700, exactly; more decimals than allowed is an error."""
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    cleaned = text.strip().replace(",", "") if "." in text else text.strip()
    try:
        value = Decimal(cleaned or "0")
    except InvalidOperation:
        raise InputError(f'{where}: "{text}" is not an amount like 497.00.') from None
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise InputError(f'{where}: "{text}" has more decimals than {currency} allows.')
    return int(minor)


def _parse_date(text: str, where: str) -> datetime:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise InputError(f'{where}: "{text}" is not a date like 2026-12-01 09:00:00.')


def _fee(row: dict[str, str], currency: str, where: str) -> int | None:
    """The fee when it is in the charge's currency (Stripe reports it in the settlement one)."""
    fee = (row.get("Fee") or "").strip()
    converted = (row.get("Converted Currency") or currency).strip().upper()
    if not fee or converted != currency:
        return None
    return to_minor_units(fee, currency, where=f"{where}, field Fee")


def _email(raw: str, where: str) -> str:
    try:
        return normalize_email(raw)
    except InputError as e:
        raise InputError(f"{where}, field Customer Email: {e}") from None


def parse_row(row: dict[str, str], line: int, name: str) -> PaymentRow | None:
    """One export row -> PaymentRow, or None for failed/uncaptured charges."""
    where = f"{name}, row {line}"
    status = (row.get("Status") or "").strip().lower()
    captured = (row.get("Captured") or "true").strip().lower()
    if status in SKIPPED_STATUSES or captured == "false":
        return None
    for column in REQUIRED:
        if not (row.get(column) or "").strip():
            raise InputError(f"{where}, field {column}: missing value.")
    currency = row["Currency"].strip().upper()
    amount = to_minor_units(row["Amount"], currency, where=f"{where}, field Amount")
    refunded_text = row.get("Amount Refunded") or "0"
    refunded = to_minor_units(refunded_text, currency, where=f"{where}, field Amount Refunded")
    if amount <= 0 or refunded < 0 or refunded > amount:
        raise InputError(f"{where}, field Amount Refunded: refunded more than the amount.")
    return PaymentRow(
        line=line,
        external_id=row["id"].strip(),
        created=_parse_date(row["Created date (UTC)"], f"{where}, field Created date (UTC)"),
        email=_email(row["Customer Email"], where),
        currency=currency,
        amount_cents=amount,
        refunded_cents=refunded,
        fee_cents=_fee(row, currency, where),
        description=(row.get("Description") or "").strip(),
    )


def read_payments_csv(path: Path) -> tuple[list[PaymentRow], int]:
    """Parse the export; returns usable rows and the number of skipped (failed) rows."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path.name}: missing column(s) {', '.join(missing)}.")
            parsed = [parse_row(row, n, path.name) for n, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path.name}: cannot read the file ({e}).") from e
    rows = [row for row in parsed if row is not None]
    seen: dict[str, int] = {}
    for row in rows:
        if row.external_id in seen:
            raise InputError(
                f"{path.name}, row {row.line}, field id: {row.external_id} repeats row "
                f"{seen[row.external_id]}."
            )
        seen[row.external_id] = row.line
    return rows, len(parsed) - len(rows)


def _subscriber_ids(session: Session, emails: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    ordered = sorted(emails)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        stmt = sa.select(Subscriber.email, Subscriber.id).where(Subscriber.email.in_(chunk))
        found.update((row.email, row.id) for row in session.execute(stmt))
    return found


def _existing_orders(session: Session, ids: list[str]) -> dict[str, Order]:
    found: dict[str, Order] = {}
    for start in range(0, len(ids), 500):
        stmt = sa.select(Order).where(Order.external_id.in_(ids[start : start + 500]))
        found.update({order.external_id or "": order for order in session.scalars(stmt)})
    return found


def _apply(order: Order, row: PaymentRow, subscriber_id: int | None, now: datetime) -> bool:
    """Copy the row onto the order; True when something changed."""
    values: dict[str, Any] = {
        "subscriber_id": subscriber_id,
        "email": row.email,
        "currency": row.currency,
        "total_cents": row.amount_cents,
        "paid_cents": row.amount_cents,
        "refunded_cents": row.refunded_cents,
        "fee_cents": row.fee_cents,
        "status": OrderStatus.REFUNDED
        if row.refunded_cents == row.amount_cents
        else OrderStatus.PAID,
        "paid_at": row.created,
        "access": row.refunded_cents < row.amount_cents,
    }
    changed = any(getattr(order, key) != value for key, value in values.items())
    for key, value in values.items():
        setattr(order, key, value)
    if changed:
        order.updated_at = now
    return changed


def import_payments(session: Session, path: Path, *, launch: str, now: datetime) -> dict:
    """Import the export into launch ``launch``; returns counts and the unmatched buyers."""
    target = get_launch(session, launch)
    rows, skipped = read_payments_csv(path)
    subscribers = _subscriber_ids(session, {row.email for row in rows})
    existing = _existing_orders(session, [row.external_id for row in rows])
    created = updated = 0
    for row in rows:
        order = existing.get(row.external_id)
        if order is not None and order.launch_id != target.id:
            raise InputError(
                f"{path.name}, row {row.line}, field id: {row.external_id} was imported into "
                "another launch."
            )
        if order is None:
            order = Order(
                launch_id=target.id,
                external_id=row.external_id,
                plan_instalments=1,
                created_at=row.created,
                updated_at=now,
                bump=False,
                instalments_paid=1,
                instalments_failed=0,
            )
            session.add(order)
            created += 1
            _apply(order, row, subscribers.get(row.email), now)
        elif _apply(order, row, subscribers.get(row.email), now):
            updated += 1
    session.flush()
    unmatched = sorted({row.email for row in rows if row.email not in subscribers})
    return {
        "launch": target.slug,
        "file": path.name,
        "rows": len(rows) + skipped,
        "imported": len(rows),
        "created": created,
        "updated": updated,
        "unchanged": len(rows) - created - updated,
        "skipped_failed": skipped,
        "matched": sum(1 for row in rows if row.email in subscribers),
        "unmatched_count": len(unmatched),
        "unmatched": unmatched,
    }
