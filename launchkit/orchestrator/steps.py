"""The launch steps: each composes domain functions and returns a StepResult.

Transactional steps take ``(session, ctx, launch)`` and run inside the step's transaction (the
step is recorded done in that same transaction). ``send_due`` manages its own transactions
because the delivery engine commits each claim and each delivery.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from launchkit.errors import DeliveryError
from launchkit.models import (
    Email,
    Launch,
    LaunchSequence,
    Magnet,
    Offer,
    Send,
    SendStatus,
)
from launchkit.orchestrator import RunContext, Step, StepResult


def import_audience(session: Session, ctx: RunContext, launch: Launch) -> StepResult:
    """Import every audience file of the plan, in one transaction."""
    from launchkit import audience

    totals: Counter[str] = Counter()
    for source in ctx.plan.audience:
        result = audience.import_subscribers(
            session,
            source.file,
            now=ctx.now,
            format=source.format,
            source=source.source,
            tags=source.tags,
            tz=ctx.settings.tz,
        )
        for key in ("new", "updated", "duplicates", "invalid", "suppressed"):
            totals[key] += getattr(result, key)
    message = (
        f"imported {totals['new']} new, {totals['updated']} updated, "
        f"{totals['duplicates']} duplicates, {totals['invalid']} invalid, "
        f"{totals['suppressed']} suppressed"
    )
    return StepResult(Step.IMPORT_AUDIENCE, "done", message, dict(totals))


def publish_magnets(session: Session, ctx: RunContext, launch: Launch) -> StepResult:
    """Create the plan's lead magnets that do not exist yet."""
    from launchkit import magnets

    created = []
    for spec in ctx.plan.magnets:
        if session.scalar(select(Magnet.id).where(Magnet.slug == spec.slug)) is not None:
            continue
        magnets.add_magnet(
            session,
            ctx.settings,
            spec.slug,
            title=spec.title,
            file=spec.file,
            url=spec.url,
            description=spec.description,
            tags=list(spec.tags),
            sequence=spec.sequence,
            now=ctx.now,
        )
        created.append(spec.slug)
    base = ctx.settings.base_url.rstrip("/")
    pages = [f"{base}/m/{spec.slug}" for spec in ctx.plan.magnets]
    return StepResult(
        Step.PUBLISH_MAGNETS,
        "done",
        f"{len(created)} new magnet(s); opt-in pages: {', '.join(pages) or 'none'}",
        {"created": created, "pages": pages},
    )


def sync_offers(session: Session, ctx: RunContext, launch: Launch) -> StepResult:
    """Save the plan's offers, then sync them to Stripe when a key is configured."""
    from launchkit import checkout

    for spec in ctx.plan.offers:
        if session.scalar(select(Offer.id).where(Offer.slug == spec.slug)) is None:
            checkout.add_offer(
                session,
                launch.slug,
                spec.slug,
                product=spec.product or launch.product,
                price_cents=spec.price_cents,
                currency=spec.currency,
                plans=list(spec.plans),
                guarantee_days=spec.guarantee_days,
                bump=spec.bump,
                now=ctx.now,
                tiers=list(spec.tiers),
                tax_behavior=spec.tax_behavior,
            )
    slugs = [spec.slug for spec in ctx.plan.offers]
    if ctx.extra.get("offline"):
        if any(c.offer for c in ctx.plan.coupons):  # a coupon limited to an offer needs its product
            checkout.sync_offers(session, ctx.stripe_client, now=ctx.now)
        added = _plan_coupons(session, ctx, ctx.stripe_client)
        return StepResult(
            Step.SYNC_OFFERS, "done", "offers saved (simulated Stripe)",
            {"offers": slugs, "coupons_added": added},
        )  # fmt: skip
    client = ctx.stripe_client
    if client is None and ctx.settings.stripe_api_key:
        client = checkout.make_client(ctx.settings)
    if client is None:
        note = " and coupons" if ctx.plan.coupons else ""
        return StepResult(
            Step.SYNC_OFFERS,
            "skipped",
            f"offers saved; set STRIPE_API_KEY to sync them{note} with Stripe",
            {"offers": slugs},
        )
    checkout.sync_offers(session, client, now=ctx.now)
    added = _plan_coupons(session, ctx, client)
    coupons = f", {len(added)} coupon(s) added" if added else ""
    return StepResult(
        Step.SYNC_OFFERS, "done", f"{len(slugs)} offer(s) synced with Stripe{coupons}",
        {"offers": slugs, "coupons_added": added},
    )  # fmt: skip


def _plan_coupons(session: Session, ctx: RunContext, client: Any) -> list[str]:
    """Create the plan's ``[[coupons]]`` not created yet; the codes added (#18)."""
    from launchkit.selling.coupons import CouponTerms, ensure_coupon

    if client is None:
        return []
    added = []
    for spec in ctx.plan.coupons:
        terms = CouponTerms(
            percent=spec.percent,
            amount_off_cents=spec.amount_cents,
            currency=ctx.settings.currency,
            until=spec.until,
            max_uses=spec.max_uses,
            offer_slug=spec.offer,
        )
        if ensure_coupon(session, client, spec.code, terms, now=ctx.now):
            added.append(spec.code)
    return added


def schedule_sequences(session: Session, ctx: RunContext, launch: Launch) -> StepResult:
    """Save the plan's segments, attach its sequences and build the delivery ledger."""
    from launchkit import segments, sequences

    for name, expression in ctx.plan.segments.items():
        segments.save_segment(session, name, expression, now=ctx.now)
    attached = {seq.name for seq in sequences.launch_sequences(session, launch)}
    for spec in ctx.plan.sequences:
        if spec.name not in attached:
            segment = segments.resolve_segment(session, spec.segment) if spec.segment else None
            sequences.attach_sequence(
                session, ctx.settings, launch.slug, spec.name, segment=segment, now=ctx.now
            )
    counts = sequences.schedule_launch(session, ctx.settings, launch, now=ctx.now)
    return StepResult(
        Step.SCHEDULE_SEQUENCES,
        "done",
        f"{len(ctx.plan.sequences)} sequence(s), {counts.emails} emails, "
        f"{counts.added} deliveries scheduled",
        _plain(counts),
    )


def send_due(sessions: sessionmaker[Session], ctx: RunContext, launch_id: int) -> StepResult:
    """Send every email that is due now; done once the launch has nothing left to send."""
    from launchkit import sequences
    from launchkit.selling.recovery import recovery_pass

    with sessions.begin() as session:
        launch = session.get(Launch, launch_id)
        assert launch is not None
        slug = launch.slug
    messenger = ctx.messenger
    report = sequences.send_due(
        sessions.kw["bind"],
        ctx.settings,
        clock=lambda: ctx.now,
        sleep=ctx.extra.get("sleep", time.sleep),
        options=sequences.SendOptions(launch=slug, dry_run=ctx.dry_run),
        messenger_factory=(lambda _settings: messenger) if messenger is not None else None,
    )
    if not ctx.dry_run:  # abandoned checkouts: one recovery email each (launchkit.selling)
        recovery_pass(sessions, ctx.settings, now=ctx.now, messenger=messenger)
    if report.stopped:
        raise DeliveryError(report.stopped)
    with sessions.begin() as session:
        remaining = pending_count(session, launch_id)
    finished = remaining == 0 and ctx.now > ctx.plan.cart_close
    skipped = sum(report.skipped.values())
    message = (
        f"sent {report.sent}, failed {report.failed + report.bounced}, skipped {skipped}; "
        f"{remaining} still scheduled"
    )
    return StepResult(Step.SEND_DUE, "done" if finished else "waiting", message, _plain(report))


def pending_count(session: Session, launch_id: int) -> int:
    """Deliveries of the launch not settled yet (queued or being sent)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Send)
            .join(Email, Email.id == Send.email_id)
            .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
            .where(
                LaunchSequence.launch_id == launch_id,
                Send.status.in_([SendStatus.QUEUED, SendStatus.SENDING]),
            )
        )
        or 0
    )


def analyze(session: Session, ctx: RunContext, launch: Launch) -> StepResult:
    """After the cart closes (and its grace period), write the analysis and the HTML report."""
    from launchkit import analysis

    closes = launch.cart_close + ctx.settings.checkout_grace
    if ctx.now < closes:
        wait = closes - ctx.now
        return StepResult(
            Step.ANALYZE, "waiting", f"the cart closes in {_human(wait)}; analysis runs after that"
        )
    reports = ctx.settings.workspace / "reports"
    reports.mkdir(exist_ok=True)
    html = reports / f"{launch.slug}.html"
    result = analysis.analyze_launch(session, launch.slug, now=ctx.now)
    html.write_text(analysis.render_workspace_report(result, ctx.settings))
    summary = {
        k: result[k]
        for k in ("audience_size", "buyers", "conversion_rate", "net_revenue_cents", "refund_rate")
        if k in result
    }
    return StepResult(
        Step.ANALYZE, "done", f"report written to {html}", {**summary, "report": str(html)}
    )


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return {"result": str(value)}


def _human(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{max(hours, 0)}h"


STEP_FUNCTIONS = {
    Step.IMPORT_AUDIENCE: import_audience,
    Step.PUBLISH_MAGNETS: publish_magnets,
    Step.SYNC_OFFERS: sync_offers,
    Step.SCHEDULE_SEQUENCES: schedule_sequences,
    Step.ANALYZE: analyze,
}
SELF_MANAGED = {Step.SEND_DUE: send_due}
