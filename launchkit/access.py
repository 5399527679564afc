"""Access that follows payment: products, what each offer grants, and who holds what now.

``entitled(order)`` is the one rule; ``sync_access`` applies it after every settled event
(called once, from ``checkout.orders._settle``), keeps the history in ``access_changes``, and
writes ``access.granted`` / ``access.revoked`` / ``order.paid`` to the webhook outbox in the same
transaction. The access email (magic link to ``/members``) goes out once per order, on the first
grant, from ``send_access_emails``.
"""

from __future__ import annotations

import enum
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session

from launchkit import hooks, tokens
from launchkit.config import Settings
from launchkit.errors import AlreadyExists, InputError, NotFound
from launchkit.launches import check_slug
from launchkit.models import (
    AccessChange,
    AccessGrant,
    Offer,
    OfferProduct,
    Order,
    OrderStatus,
    Product,
    Subscriber,
)


class ProductKind(enum.StrEnum):
    URL = "url"  # a page (a course platform, a private video): redirected to
    FILE = "file"  # a file copied into the workspace: served as a download
    INVITE = "invite"  # a community invite link: redirected to


ENTITLED_STATUSES = frozenset(
    {OrderStatus.PAID, OrderStatus.ACTIVE_PLAN, OrderStatus.COMPLETED_PLAN}
)

# --- the rule ---------------------------------------------------------------------------------


def entitled(order: Order) -> bool:
    """Whether this order gives its buyer access now: paid, a plan being paid or paid off; not
    refunded, disputed or defaulted. A membership order follows its membership's status
    (trialing, active, past due while Stripe retries, cancelling until the period ends)."""
    # imported here: memberships build on checkout, whose settle path calls sync_access
    from launchkit.memberships.lifecycle import membership_entitled, membership_for_order

    session = object_session(order)
    membership = membership_for_order(session, order) if session and order.id else None
    if membership is not None:
        return membership_entitled(membership)
    return order.status in ENTITLED_STATUSES


# --- products ---------------------------------------------------------------------------------


def add_product(
    session: Session,
    settings: Settings,
    slug: str,
    *,
    title: str,
    url: str | None = None,
    file: Path | None = None,
    invite: str | None = None,
    now: datetime,
) -> Product:
    """Add a product: exactly one of ``url``, ``file`` (copied into the workspace), ``invite``."""
    check_slug(slug, "Product")
    if session.scalar(select(Product.id).where(Product.slug == slug)) is not None:
        raise AlreadyExists(f'Product "{slug}" already exists.')
    if not title.strip():
        raise InputError("--title must not be empty.")
    given = [(k, v) for k, v in (("url", url), ("file", file), ("invite", invite)) if v]
    if len(given) != 1:
        raise InputError("Give exactly one of --url, --file or --invite.")
    kind, value = given[0]
    if kind == "file":
        target = _copy_file(settings, slug, Path(value))
    else:
        target = _check_url(str(value), f"--{kind}")
    product = Product(slug=slug, title=title.strip(), kind=kind, target=target, created_at=now)
    session.add(product)
    session.flush()
    return product


def _check_url(url: str, flag: str) -> str:
    if not url.startswith("https://") or len(url) > 2048 or any(c.isspace() for c in url):
        raise InputError(f'{flag} "{url}" must be an https:// address.')
    return url


def _copy_file(settings: Settings, slug: str, source: Path) -> str:
    if not source.is_file():
        raise InputError(f'--file "{source}" does not exist or is not a file.')
    folder = settings.workspace / "products" / slug
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    shutil.copyfile(source, target)
    return str(target.relative_to(settings.workspace))


def get_product(session: Session, slug: str) -> Product:
    """The product with this slug, or NotFound."""
    product = session.scalar(select(Product).where(Product.slug == slug))
    if product is None:
        raise NotFound(f'Product "{slug}" does not exist; see `launchkit product list`.')
    return product


def list_products(session: Session) -> list[Product]:
    """Every product, by slug."""
    return list(session.scalars(select(Product).order_by(Product.slug)))


def remove_product(session: Session, slug: str) -> Product:
    """Remove a product (and every grant of it)."""
    product = get_product(session, slug)
    session.delete(product)
    session.flush()
    return product


def product_as_dict(session: Session, product: Product) -> dict[str, Any]:
    """JSON-ready product with the offers that grant it."""
    offers = session.scalars(
        select(Offer.slug)
        .join(OfferProduct, OfferProduct.offer_id == Offer.id)
        .where(OfferProduct.product_id == product.id)
        .order_by(Offer.slug)
    )
    return {
        "slug": product.slug,
        "title": product.title,
        "kind": product.kind,
        "target": product.target,
        "offers": list(offers),
    }


def _offer(session: Session, slug: str) -> Offer:
    offer = session.scalar(select(Offer).where(Offer.slug == slug))
    if offer is None:
        raise NotFound(f'Offer "{slug}" does not exist; see `launchkit offer list`.')
    return offer


def grant_product(session: Session, offer_slug: str, product_slug: str, *, now: datetime) -> int:
    """Make an offer grant a product; its current buyers get it too. Returns the grants made."""
    offer, product = _offer(session, offer_slug), get_product(session, product_slug)
    if session.get(OfferProduct, (offer.id, product.id)) is None:
        session.add(OfferProduct(offer_id=offer.id, product_id=product.id))
        session.flush()
    orders = session.scalars(select(Order).where(Order.offer_id == offer.id)).all()
    return sum(sync_access(session, order, now)[0] for order in orders)


def ungrant_product(session: Session, offer_slug: str, product_slug: str) -> None:
    """Stop an offer granting a product (existing grants are kept; revoke by refunding)."""
    offer, product = _offer(session, offer_slug), get_product(session, product_slug)
    link = session.get(OfferProduct, (offer.id, product.id))
    if link is None:
        raise NotFound(f'Offer "{offer_slug}" does not grant "{product_slug}".')
    session.delete(link)
    session.flush()


def _offer_products(session: Session, offer_id: int | None) -> list[Product]:
    if offer_id is None:
        return []
    return list(
        session.scalars(
            select(Product)
            .join(OfferProduct, OfferProduct.product_id == Product.id)
            .where(OfferProduct.offer_id == offer_id)
            .order_by(Product.id)
        )
    )


# --- following payment ------------------------------------------------------------------------


def sync_access(session: Session, order: Order, now: datetime) -> tuple[int, int]:
    """Grant or revoke the order's products so they match ``entitled(order)``; record each
    change and queue its webhooks. Idempotent. Returns (granted, revoked)."""
    if order.instalments_paid > 0:
        hooks.enqueue(
            session, "order.paid", _order_data(order), key=f"order.paid:{order.id}", now=now
        )
    want = entitled(order)
    granted = revoked = 0
    for product in _offer_products(session, order.offer_id):
        grant = session.scalar(
            select(AccessGrant).where(
                AccessGrant.order_id == order.id, AccessGrant.product_id == product.id
            )
        )
        if want and (grant is None or not grant.active):
            if grant is None:
                grant = AccessGrant(order_id=order.id, product_id=product.id, granted_at=now)
                session.add(grant)
            grant.active, grant.revoked_at = True, None
            _record(session, order, product, "granted", now)
            granted += 1
        elif not want and grant is not None and grant.active:
            grant.active, grant.revoked_at = False, now
            _record(session, order, product, "revoked", now)
            revoked += 1
    session.flush()
    return granted, revoked


def _order_data(order: Order) -> dict[str, Any]:
    return {
        "order": order.id,
        "email": order.email,
        "status": order.status,
        "paid_cents": order.paid_cents,
        "currency": order.currency,
    }


def _record(session: Session, order: Order, product: Product, action: str, now: datetime) -> None:
    change = AccessChange(
        order_id=order.id, product_id=product.id, action=action, reason=str(order.status),
        occurred_at=now,
    )  # fmt: skip
    session.add(change)
    session.flush()
    data = {
        **_order_data(order),
        "product": product.slug,
        "product_title": product.title,
        "reason": change.reason,
    }
    hooks.enqueue(session, f"access.{action}", data, key=f"access:{change.id}", now=now)


def access_history(session: Session, order_id: int | None = None) -> list[dict[str, Any]]:
    """Every grant and revocation, oldest first (of one order with ``order_id``)."""
    query = (
        select(AccessChange, Product.slug, Order.email)
        .join(Product, Product.id == AccessChange.product_id)
        .join(Order, Order.id == AccessChange.order_id)
        .order_by(AccessChange.occurred_at, AccessChange.id)
    )
    if order_id is not None:
        query = query.where(AccessChange.order_id == order_id)
    return [
        {
            "order": change.order_id,
            "email": email,
            "product": slug,
            "action": change.action,
            "reason": change.reason,
            "at": change.occurred_at,
        }
        for change, slug, email in session.execute(query)
    ]


# --- the member's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Owned:
    """A product a buyer holds now."""

    product: Product
    order_id: int


def owned_products(session: Session, email: str) -> list[Owned]:
    """What the holder of ``email`` has access to now (one entry per product)."""
    rows = session.execute(
        select(Product, AccessGrant.order_id)
        .join(AccessGrant, AccessGrant.product_id == Product.id)
        .join(Order, Order.id == AccessGrant.order_id)
        .outerjoin(Subscriber, Subscriber.id == Order.subscriber_id)
        .where(AccessGrant.active.is_(True), (Order.email == email) | (Subscriber.email == email))
        .order_by(Product.title, Product.id)
    )
    seen: dict[int, Owned] = {}
    for product, order_id in rows:
        seen.setdefault(product.id, Owned(product, order_id))
    return list(seen.values())


def members_url(settings: Settings, email: str) -> str:
    """The magic link to ``/members`` (signed, expires with ``unsubscribe_link_max_age``), in
    the settings' language."""
    payload = {"e": email, "l": settings.language}
    return tokens.link(settings, "/members", tokens.Purpose.MEMBERS, payload)


def product_url(settings: Settings, email: str, product_id: int) -> str:
    """A signed link to one product (expires with ``download_link_max_age``)."""
    payload = {"e": email, "p": product_id}
    return tokens.link(settings, "/members/p", tokens.Purpose.ACCESS, payload)


@dataclass(frozen=True)
class Opened:
    """Where a product link leads: a file to serve or a URL to redirect to."""

    path: Path | None
    url: str | None


def open_product(session: Session, settings: Settings, payload: dict[str, Any]) -> Opened:
    """What a verified product link serves; NotFound once access is revoked."""
    email, product_id = str(payload.get("e", "")), payload.get("p")
    held = [o for o in owned_products(session, email) if o.product.id == product_id]
    if not held:
        raise NotFound("You do not have access to this product (any more).")
    product = held[0].product
    if product.kind != ProductKind.FILE:
        return Opened(None, product.target)
    path = (settings.workspace / product.target).resolve()
    if not path.is_file() or not path.is_relative_to(settings.workspace.resolve()):
        raise NotFound(f'The file of product "{product.slug}" is missing from the workspace.')
    return Opened(path, None)


# --- the access email -------------------------------------------------------------------------


def send_access_emails(
    session: Session, settings: Settings, messenger: Any, *, now: datetime, env: Any = None
) -> int:
    """Send the access email once per order, after its first grant (claim, then send)."""
    from launchkit.checkout.notifications import _email, buyer_settings, send_claimed

    due = session.scalars(
        select(Order)
        .join(AccessGrant, AccessGrant.order_id == Order.id)
        .where(AccessGrant.active.is_(True), AccessGrant.email_sent_at.is_(None), Order.email != "")
        .distinct()
    ).all()
    sent = 0
    for order in due:

        def access(order: Order = order) -> None:
            buyer = buyer_settings(session, settings, order)
            titles = [o.product.title for o in owned_products(session, order.email)]
            variables = {"members_url": members_url(buyer, order.email), "products": titles}
            _email(buyer, messenger, env, "access", session, order, variables, now)

        claim = lambda order_id=order.id: _claim_email(session, order_id, now)  # noqa: E731
        sent += send_claimed(session, messenger, order.email, claim, access, now=now)
    return sent


def _claim_email(session: Session, order_id: int, now: datetime) -> bool:
    result = session.execute(
        update(AccessGrant)
        .where(AccessGrant.order_id == order_id, AccessGrant.email_sent_at.is_(None))
        .values(email_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return bool(getattr(result, "rowcount", 0))
