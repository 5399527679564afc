"""Evergreen launches (#18): each entrant's own sequence, cart and deadline.

Both databases; the checkout is the real web app (Starlette TestClient) with the recording
Stripe client; delivery goes through the file outbox of the real sender.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text

from launchkit import audience, evergreen, sequences
from launchkit.errors import InputError, NotFound
from launchkit.models import EvergreenEntry, Launch, Send, Subscriber
from tests.sendkit import tune, write_sequence

T0 = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)  # a Monday
PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")

FILES = {
    "01-welcome.md": '---\nsubject: "Bienvenue"\nsend_at: "entry +0h"\n---\nBonjour.\n',
    "02-open.md": (
        '---\nsubject: "C\'est ouvert"\nsend_at: "cart_open +0d 09:00"\nlocal: true\n'
        'kind: sales\nskip_if: "tag:buyer"\n---\n'
        "Jusqu'au {{ cart_close }}: [acheter]({{ checkout_url }})\n"
    ),
    "03-last.md": (
        '---\nsubject: "Dernier appel"\nsend_at: "cart_close -3h"\nkind: sales\n'
        'skip_if: "tag:buyer"\n---\n'
        "Fin le {{ cart_close }}. [acheter]({{ checkout_url }})\n"
    ),
}


def _person(session, email: str, zone: str | None = None) -> Subscriber:
    sub = Subscriber(email=email, timezone=zone, created_at=T0, updated_at=T0)
    session.add(sub)
    session.flush()
    return sub


def _launch(session, settings, now=T0 - timedelta(days=1)) -> Launch:
    write_sequence(settings, "always", FILES)
    launch = evergreen.create_evergreen_launch(
        session, "always", product="Cours photo", entry="tag:webinar", cart_open="entry +7d",
        cart_close="entry +10d", currency="EUR", tz=settings.tz, now=now,
    )  # fmt: skip
    sequences.attach_sequence(session, settings, "always", "always", now=now)
    return launch


def _due(session, email_step: str) -> dict[str, datetime]:
    from launchkit.models import Email

    rows = session.execute(
        select(Subscriber.email, Send.due_at)
        .join(Send, Send.subscriber_id == Subscriber.id)
        .join(Email, Email.id == Send.email_id)
        .where(Email.step == email_step)
    )
    return dict(rows.all())


def test_two_entrants_a_week_apart_get_the_same_emails_a_week_apart(sessions, settings) -> None:
    settings = tune(settings)  # send window 00:00-24:00
    with sessions.begin() as s:
        launch = _launch(s, settings)
        ana, bo = _person(s, "ana@example.fr", "Europe/Paris"), _person(s, "bo@example.com")
        bo.timezone = "America/New_York"
        audience.add_tags(s, [ana.id], ["webinar"], at=T0)
        audience.add_tags(s, [bo.id], ["webinar"], at=T0 + timedelta(days=7))
        first = sequences.schedule_launch(s, settings, launch, now=T0 + timedelta(hours=1))
        assert first.added == 3  # ana only: bo has not entered yet at that time
        second = sequences.schedule_launch(s, settings, launch, now=T0 + timedelta(days=8))
        assert second.added == 3  # bo, on the next run
        again = sequences.schedule_launch(s, settings, launch, now=T0 + timedelta(days=9))
        assert again.added == 0
        welcome, opens, last = _due(s, "01-welcome"), _due(s, "02-open"), _due(s, "03-last")
        entries = {e.subscriber_id: e for e in s.scalars(select(EvergreenEntry))}
    assert welcome == {"ana@example.fr": T0, "bo@example.com": T0 + timedelta(days=7)}
    # 09:00 on the day the person's cart opens, in their own zone
    assert opens["ana@example.fr"].astimezone(PARIS).replace(tzinfo=None) == datetime(
        2026, 11, 9, 9, 0
    )
    assert opens["bo@example.com"].astimezone(NEW_YORK).replace(tzinfo=None) == datetime(
        2026, 11, 16, 9, 0
    )
    assert last["bo@example.com"] - last["ana@example.fr"] == timedelta(days=7)
    assert last["ana@example.fr"] == T0 + timedelta(days=10, hours=-3)
    assert entries[ana.id].cart_close_at == T0 + timedelta(days=10)
    assert entries[bo.id].cart_open_at == T0 + timedelta(days=14)


def test_cart_emails_carry_the_persons_deadline(sessions, settings) -> None:
    with sessions.begin() as s:
        launch = _launch(s, tune(settings))
        ana = _person(s, "ana@example.fr")
        audience.add_tags(s, [ana.id], ["webinar"], at=T0)
        sequences.schedule_launch(s, tune(settings), launch, now=T0)
        deadlines = dict(
            s.execute(
                select(Send.due_at, Send.deadline_at).where(Send.subscriber_id == ana.id)
            ).all()
        )
    assert sorted(d for d in deadlines.values() if d) == [T0 + timedelta(days=10)]


def test_entries_before_the_launch_or_without_a_time_are_not_entrants(sessions, settings) -> None:
    with sessions.begin() as s:
        launch = _launch(s, tune(settings), now=T0)
        old, untimed, fresh = (_person(s, f"{n}@example.fr") for n in ("old", "untimed", "new"))
        audience.add_tags(s, [old.id], ["webinar"], at=T0 - timedelta(days=3))
        audience.add_tags(s, [untimed.id], ["webinar"])  # e.g. an import: no time recorded
        audience.add_tags(s, [fresh.id], ["webinar"], at=T0 + timedelta(hours=2))
        assert evergreen.record_entries(s, launch, tz=settings.tz, now=T0 + timedelta(days=1)) == 1
        assert evergreen.record_entries(s, launch, tz=settings.tz, now=T0 + timedelta(days=2)) == 0
        assert list(s.scalars(select(EvergreenEntry.subscriber_id))) == [fresh.id]


def test_magnet_entry_is_the_first_confirmed_opt_in(sessions, settings) -> None:
    from launchkit import magnets

    with sessions.begin() as s:
        magnet = magnets.add_magnet(
            s, settings, "guide", title="Guide", url="https://e.org/g", now=T0 - timedelta(days=2)
        )
        launch = evergreen.create_evergreen_launch(
            s, "always", product="Cours", entry="magnet:guide", cart_open="entry +7d",
            cart_close="entry +10d", currency="EUR", tz=settings.tz, now=T0 - timedelta(days=1),
        )  # fmt: skip
        visitor = magnets.Visitor("192.0.2.1", "Mozilla/5.0", "https://e.org/")
        for email, at in (("ana@example.fr", T0), ("bo@example.fr", T0 + timedelta(days=1))):
            data = magnets.SignupInput(email=email, first_name="A")
            up = magnets.signup(s, settings, magnet, data, visitor, now=at - timedelta(minutes=5))
            payload = {"s": up.subscriber.id, "m": magnet.id, "c": up.consent.id}
            magnets.confirm_signup(s, settings, payload, ip=None, now=at)
        magnets.signup(  # signed up, never confirmed: not an entrant
            s, settings, magnet, magnets.SignupInput(email="cy@example.fr", first_name="C"),
            visitor, now=T0,
        )  # fmt: skip
        evergreen.record_entries(s, launch, tz=settings.tz, now=T0 + timedelta(days=3))
        rows = s.execute(
            select(Subscriber.email, EvergreenEntry.entered_at).join(
                Subscriber, Subscriber.id == EvergreenEntry.subscriber_id
            )
        ).all()
    assert dict(rows) == {"ana@example.fr": T0, "bo@example.fr": T0 + timedelta(days=1)}


def test_bad_spellings_are_one_line_errors(session, settings) -> None:
    with pytest.raises(InputError, match='must be "magnet:SLUG" or "tag:TAG"'):
        evergreen.parse_entry("webinar")
    with pytest.raises(InputError, match='must be a time after the entry, e.g. "entry \\+7d"'):
        evergreen.parse_offset("cart_open +7d", where="--cart-open")
    with pytest.raises(NotFound, match='magnet "nope" does not exist'):
        evergreen.create_evergreen_launch(
            session, "x", product="P", entry="magnet:nope", cart_open="entry +7d",
            cart_close="entry +10d", currency="EUR", tz=settings.tz, now=T0,
        )  # fmt: skip
    with pytest.raises(InputError, match="the cart must open before it closes"):
        evergreen.create_evergreen_launch(
            session, "y", product="P", entry="tag:w", cart_open="entry +7d",
            cart_close="entry +2d", currency="EUR", tz=settings.tz, now=T0,
        )  # fmt: skip


def test_cli_create_evergreen_and_errors(cli) -> None:
    ok = cli("launch", "create", "always", "--product", "Cours", "--evergreen", "--entry",
             "tag:webinar", "--cart-open", "entry +7d", "--cart-close", "entry +10d")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert 'Created evergreen launch "always"' in ok.output
    text = cli("launch", "show", "always")
    assert "evergreen, entry tag:webinar, each person's cart entry +7d to entry +10d" in text.output
    shown = cli("launch", "show", "always", "--json")
    assert '"mode": "evergreen"' in shown.output and '"entry": "tag:webinar"' in shown.output
    bad = cli("launch", "create", "b", "--product", "C", "--evergreen", "--entry", "webinar",
              "--cart-open", "entry +7d", "--cart-close", "entry +10d")  # fmt: skip
    assert bad.exit_code == 1
    assert bad.stderr == (
        'Error: --entry: "webinar" must be "magnet:SLUG" or "tag:TAG" (e.g. magnet:guide).\n'
    )
    missing = cli("launch", "create", "c", "--product", "C", "--evergreen",
                  "--cart-open", "entry +7d", "--cart-close", "entry +10d")  # fmt: skip
    assert missing.exit_code == 1
    assert missing.stderr == "Error: --evergreen needs --entry magnet:SLUG or --entry tag:TAG.\n"
    offset = cli("launch", "create", "d", "--product", "C", "--evergreen", "--entry", "tag:w",
                 "--cart-open", "2026-12-01 09:00", "--cart-close", "entry +10d")  # fmt: skip
    assert offset.exit_code == 1 and offset.stderr.startswith("Error: --cart-open: send_at")


# --- checkout: the person's own deadline, in the real web app ------------------------------


def _offer(session, settings) -> Subscriber:
    from launchkit import checkout

    _launch(session, settings)
    checkout.add_offer(
        session, "always", "cours", product="Cours photo", price_cents=49700, currency="EUR",
        plans=[], now=T0,
    )  # fmt: skip
    ana = _person(session, "ana@example.fr")
    audience.add_tags(session, [ana.id], ["webinar"], at=T0)
    launch = session.scalar(select(Launch).where(Launch.slug == "always"))
    evergreen.record_entries(session, launch, tz=settings.tz, now=T0)
    return ana


def _token(settings, sid: int, deadline: datetime) -> str:
    from launchkit.tokens import Purpose, make_token

    return make_token(settings, Purpose.CHECKOUT, {"s": sid, "d": int(deadline.timestamp())})


def test_checkout_enforces_the_persons_deadline(sessions, stripe_settings) -> None:
    from starlette.testclient import TestClient

    from launchkit import checkout
    from launchkit.web import create_app
    from tests.test_checkout import RecordingClient, _posted
    from tests.test_web import csrf_of

    with sessions.begin() as s:
        ana = _offer(s, stripe_settings)
        sid = ana.id
    deadline = T0 + timedelta(days=10)
    token = _token(stripe_settings, sid, deadline)
    http = RecordingClient()

    def web_at(moment: datetime) -> TestClient:
        app = create_app(stripe_settings, clock=lambda: moment)
        app.state.stripe_client = checkout.make_client(stripe_settings, http_client=http)
        return TestClient(app)

    before = deadline - timedelta(minutes=5)  # 20 minutes left with the 15-minute grace
    with web_at(before) as web:
        page = web.get(f"/buy/cours?t={token}")
        assert page.status_code == 200 and "ana@example.fr" in page.text
        assert str(int((deadline + timedelta(minutes=15)).timestamp()) * 1000) in page.text
        form = {"csrf_token": csrf_of(page.text), "plan": "full", "t": token}
        assert web.post("/buy/cours", data=form, follow_redirects=False).status_code == 303
        # no token, a forged one: refused, whatever the time
        assert web.get("/buy/cours").status_code == 403
        forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
        refused = web.get(f"/buy/cours?t={forged}")
        assert refused.status_code == 403 and "personnel" in refused.text
        other = _token(stripe_settings, sid, deadline + timedelta(days=30))[:-1]
        assert web.get(f"/buy/cours?t={other}").status_code == 403
    fields = _posted(http, "/v1/checkout/sessions")
    assert len(fields) == 1
    # the session expires at Stripe's 30-minute minimum here (the deadline is 20 minutes away)
    assert int(fields[0]["expires_at"]) == int((before + timedelta(minutes=30)).timestamp())
    assert fields[0]["metadata[subscriber]"] == str(sid)

    after = deadline + timedelta(minutes=16)
    with web_at(after) as web:
        page = web.get(f"/buy/cours?t={token}")
        assert page.status_code == 403 and "fermé" in page.text
        posted = web.post("/buy/cours", data={"plan": "full", "t": token},
                          follow_redirects=False)  # fmt: skip
        assert posted.status_code == 403
    assert len(_posted(http, "/v1/checkout/sessions")) == 1  # nothing created after


def test_session_expiry_is_cut_to_the_deadline() -> None:
    now = T0
    assert evergreen.session_expiry(now, now + timedelta(days=2)) == now + timedelta(hours=1)
    assert evergreen.session_expiry(now, now + timedelta(minutes=45)) == now + timedelta(minutes=45)
    assert evergreen.session_expiry(now, now + timedelta(minutes=5)) == now + timedelta(minutes=30)


def test_start_checkout_without_a_deadline_is_refused(session, stripe_settings) -> None:
    from launchkit import checkout
    from launchkit.checkout.offers import CartClosed
    from tests.test_checkout import RecordingClient

    ana = _offer(session, stripe_settings)
    client = checkout.make_client(stripe_settings, http_client=RecordingClient())
    with pytest.raises(CartClosed, match="checkout only from the link in its emails"):
        checkout.start_checkout(
            session, stripe_settings, client, "cours", plan="full", subscriber_id=ana.id,
            email=None, bump=False, now=T0 + timedelta(days=8),
        )  # fmt: skip
    with pytest.raises(CartClosed, match="closed for this buyer"):
        checkout.start_checkout(
            session, stripe_settings, client, "cours", plan="full", subscriber_id=ana.id,
            email=None, bump=False, now=T0 + timedelta(days=11), deadline=T0 + timedelta(days=10),
        )  # fmt: skip


# --- delivery: real SMTP, each person's own deadline ---------------------------------------


def test_send_times_links_and_deadlines_are_per_person(settings, engine, sessions, smtp_sink):
    import re

    from launchkit.clicks import follow_click
    from launchkit.tokens import Purpose, read_token
    from tests.sendkit import FakeClock
    from tests.test_sender import parsed, run, smtp_settings

    settings = smtp_settings(settings, smtp_sink)
    with sessions.begin() as s:
        launch = _launch(s, settings)
        ana, bo = _person(s, "ana@example.fr"), _person(s, "bo@example.fr")
        audience.add_tags(s, [ana.id], ["webinar"], at=T0)
        audience.add_tags(s, [bo.id], ["webinar"], at=T0 + timedelta(days=1))
        ids = {"ana@example.fr": ana.id, "bo@example.fr": bo.id}
        assert launch.mode == "evergreen"
    clock = FakeClock(T0 + timedelta(days=10, hours=-2))  # ana's last call is due, not bo's
    report = run(engine, settings, clock)
    assert report.sent == 5
    smtp_sink.wait_for(5)
    last = {m["To"].addresses[0].addr_spec: m for m in parsed(smtp_sink)
            if m["Subject"] == "Dernier appel"}  # fmt: skip
    assert list(last) == ["ana@example.fr"]
    text = last["ana@example.fr"].get_body(("plain",)).get_content()
    assert "12 novembre" in text  # ana's own cart close (T0 + 10 days)
    # the checkout link goes through /c/ (click tracking): the click leads to ana's own link
    click = re.search(r"/c/([A-Za-z0-9_.\-]+)", text)[1]
    with sessions.begin() as s:
        url = follow_click(s, settings, click, now=clock.now, record=False).url
    token = re.search(r"/buy/always\?t=([A-Za-z0-9_.\-]+)", url)[1]
    data = read_token(settings, Purpose.CHECKOUT, token)
    assert data == {"s": ids["ana@example.fr"], "d": int((T0 + timedelta(days=10)).timestamp())}
    # bo's last call was due 3 h before bo's own close; the sender is late: past it, skipped
    clock.now = T0 + timedelta(days=11, minutes=1)
    late = run(engine, settings, clock)
    assert late.sent == 0
    with sessions.begin() as s:
        reasons = dict(s.execute(select(Send.subscriber_id, Send.reason)
                                 .where(Send.status == "skipped")).all())  # fmt: skip
    assert reasons == {ids["bo@example.fr"]: "deadline"}
    assert len(smtp_sink.messages) == 5


# --- analysis: entrants by ISO week, checked against an independent computation -------------


def _expected_weeks(people, tz) -> dict[str, dict[str, int]]:
    """The oracle: plain loops over the generated people, no shared code with the analysis."""
    out: dict[str, dict[str, int]] = {}
    for entered, close, purchases in people:
        local = entered.astimezone(tz)
        year, week, _ = local.isocalendar()
        row = out.setdefault(f"{year}-W{week:02d}", {"entrants": 0, "buyers": 0, "revenue": 0})
        row["entrants"] += 1
        good = [cents for at, cents in purchases if at <= close + timedelta(hours=1)]
        if good:
            row["buyers"] += 1
            row["revenue"] += sum(good)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_entrants_by_week_matches_an_oracle(cli, sessions, settings, seed) -> None:
    import random

    from launchkit.analysis import analyze_launch
    from launchkit.analysis.definitions import wilson_interval
    from launchkit.models import Order

    rng = random.Random(seed)
    tz = settings.tz
    people = []
    with sessions.begin() as s:
        launch = _launch(s, tune(settings), now=T0)
        for i in range(60):
            sub = _person(s, f"p{i}@example.fr")
            entered = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 35))
            audience.add_tags(s, [sub.id], ["webinar"], at=entered)
            close = entered + timedelta(days=10)
            purchases = []
            for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
                at = close + timedelta(minutes=rng.randrange(-60 * 24 * 3, 60 * 5))
                cents = rng.choice([49700, 19900])
                purchases.append((at, cents))
                s.add(Order(launch_id=launch.id, subscriber_id=sub.id, email=sub.email,
                            currency="EUR", total_cents=cents, paid_cents=cents, status="paid",
                            created_at=at, updated_at=at))  # fmt: skip
            people.append((entered, close, purchases))
        evergreen.record_entries(s, launch, tz=tz, now=T0 + timedelta(days=60))
        result = analyze_launch(s, "always", tz=tz)["evergreen"]
    expected = _expected_weeks(people, tz)
    assert [w["week"] for w in result["weeks"]] == sorted(expected)
    for row in result["weeks"]:
        want = expected[row["week"]]
        assert (row["entrants"], row["buyers"], row["revenue_cents"]) == (
            want["entrants"], want["buyers"], want["revenue"],
        )  # fmt: skip
        low, high = wilson_interval(want["buyers"], want["entrants"])
        assert row["conversion_rate"] == pytest.approx(want["buyers"] / want["entrants"])
        assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert result["entrants"] == 60
    late = sum(1 for _, close, buys in people for at, _ in buys if at > close + timedelta(hours=1))
    assert result["late_orders"] == late
    _headline_matches_the_oracle(cli, people)


def _headline_matches_the_oracle(cli, people) -> None:
    """The headline of ``analyze --json`` and ``status --json`` counts per person too:
    audience = entrants, buyers in it = entrants who bought by their own close + 1 hour."""
    import json

    from launchkit.analysis.definitions import wilson_interval

    in_time = sum(
        1 for _, close, buys in people if any(at <= close + timedelta(hours=1) for at, _ in buys)
    )
    anyone = sum(1 for _, _, buys in people if buys)
    late_only = anyone - in_time
    low, high = wilson_interval(in_time, len(people))
    out = cli("analyze", "always", "--json")
    assert out.exit_code == 0, out.output
    head = json.loads(out.output)
    assert (head["audience_size"], head["buyers_in_audience"]) == (len(people), in_time)
    assert (head["buyers"], head["buyers_on_list_outside_audience"]) == (anyone, late_only)
    assert head["conversion_rate"] == pytest.approx(in_time / len(people))
    assert head["conversion_ci95"] == [pytest.approx(low), pytest.approx(high)]
    assert head["conversion_rate"] == pytest.approx(head["evergreen"]["conversion_rate"])
    out = cli("status", "always", "--json", "--now", "2027-02-01 12:00")
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert (status["audience_size"], status["buyers_in_audience"]) == (len(people), in_time)
    assert status["conversion_rate"] == pytest.approx(in_time / len(people))


def test_cli_analyze_shows_entrants_by_week(cli, sessions, settings, tmp_path) -> None:
    with sessions.begin() as s:
        launch = _launch(s, tune(settings), now=T0)
        ana = _person(s, "ana@example.fr")
        audience.add_tags(s, [ana.id], ["webinar"], at=T0 + timedelta(hours=1))
        evergreen.record_entries(s, launch, tz=settings.tz, now=T0 + timedelta(days=1))
    text = cli("analyze", "always")
    assert text.exit_code == 0, text.output
    assert "Entrants by week" in text.output and "2026-W45" in text.output
    as_json = cli("analyze", "always", "--json")
    assert '"week": "2026-W45"' in as_json.output
    html = tmp_path / "r.html"
    assert cli("analyze", "always", "--html", str(html)).exit_code == 0
    assert 'id="evergreen"' in html.read_text() and "2026-W45" in html.read_text()


# --- rehearse: the promises of an evergreen launch ------------------------------------------


def test_promises_hold_after_a_real_send_and_catch_breaches(settings, engine, sessions) -> None:
    from launchkit.models import Email, Order, WebEvent
    from launchkit.orchestrator.promises import check_promises
    from tests.sendkit import FakeClock
    from tests.test_sender import run

    settings = tune(settings)
    with sessions.begin() as s:
        _offer(s, settings)
        bo = _person(s, "bo@example.fr")
        audience.add_tags(s, [bo.id], ["webinar"], at=T0 + timedelta(days=1))
    clock = FakeClock(T0 + timedelta(days=10, hours=-2))
    run(engine, settings, clock)
    clock.now = T0 + timedelta(days=11, hours=-2)  # bo's own last call
    assert run(engine, settings, clock).sent == 1
    clock.now = T0 + timedelta(days=12)
    assert run(engine, settings, clock).sent == 0

    with sessions.begin() as s:
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        checks = check_promises(s, settings, launch)["checks"]
        assert [c["promise"] for c in checks if c["broken"]] == []
        names = {c["promise"] for c in checks}
        assert sum(name.startswith("evergreen: ") for name in names) == 2
        # breaches: a last call sent after bo's own close, a checkout and an order after it
        last = s.scalar(select(Email.id).where(Email.step == "03-last"))
        s.execute(Send.__table__.update().where(Send.email_id == last, Send.subscriber_id == bo.id)
                  .values(status="sent", sent_at=T0 + timedelta(days=11, hours=1)))  # fmt: skip
        offer_id = s.scalar(select(sa_offer_id()))
        s.add(WebEvent(kind="checkout_start", offer_id=offer_id, subscriber_id=bo.id,
                       occurred_at=T0 + timedelta(days=11, hours=1)))  # fmt: skip
        s.add(WebEvent(kind="checkout_start", offer_id=offer_id, occurred_at=T0))
        launch_id = s.scalar(select(Launch.id).where(Launch.slug == "always"))
        s.add(Order(launch_id=launch_id, subscriber_id=bo.id, email=bo.email, currency="EUR",
                    total_cents=100, paid_cents=100, status="paid", created_at=T0
                    + timedelta(days=11, hours=2), updated_at=T0))  # fmt: skip
        s.flush()
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        result = check_promises(s, settings, launch)
    by_promise = {c["promise"]: c["broken"] for c in result["checks"]}
    assert by_promise["evergreen: no cart email reaches a person after their own cart close"] == 1
    assert by_promise["evergreen: no checkout or sale after a person's own deadline"] == 3
    assert (
        by_promise["every eligible non-buyer receives the cart-close emails before the deadline"]
        == 1
    )  # sent, but after bo's own close


def sa_offer_id():
    from launchkit.models import Offer

    return Offer.id


# --- launch.toml ---------------------------------------------------------------------------

PLAN = """
[launch]
slug = "always"
product = "Cours photo"
mode = "evergreen"
entry = "{entry}"
starts = "2026-11-01 00:00"
cart_open = "entry +7d"
cart_close = "{close}"

[[magnets]]
slug = "guide"
title = "Guide"
url = "https://example.org/guide.pdf"

[[sequences]]
name = "always"
"""


def test_launch_toml_evergreen_creates_the_evergreen_launch(settings, sessions) -> None:
    from launchkit.orchestrator import RunContext, Step, run_plan
    from launchkit.plan import check_plan, load_plan

    write_sequence(settings, "always", FILES)
    path = settings.workspace / "launch.toml"
    path.write_text(PLAN.format(entry="magnet:guide", close="entry +10d"))
    plan = load_plan(path, settings)
    assert (plan.mode, plan.entry, plan.entry_cart_close) == ("evergreen", "magnet:guide",
                                                              "entry +10d")  # fmt: skip
    assert check_plan(plan, settings) == []
    assert plan.cart_close - plan.cart_open == timedelta(days=365)
    run_plan(sessions, RunContext(settings, plan, T0), until=Step.SCHEDULE_SEQUENCES)
    with sessions.begin() as s:
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        assert (launch.mode, launch.entry, launch.entry_cart_open) == (
            "evergreen", "magnet:guide", "entry +7d",
        )  # fmt: skip


def test_launch_toml_evergreen_problems_name_the_field(settings) -> None:
    from launchkit.plan import PlanInvalid, load_plan

    path = settings.workspace / "launch.toml"
    path.write_text(PLAN.format(entry="guide", close="cart_open +3d"))
    with pytest.raises(PlanInvalid) as caught:
        load_plan(path, settings)
    problems = [str(p) for p in caught.value.problems]
    assert any("launch.entry" in p and 'must be "magnet:SLUG" or "tag:TAG"' in p for p in problems)
    assert any("launch.cart_close" in p and "after the entry" in p for p in problems)
    path.write_text(PLAN.format(entry="tag:w", close="entry +3d").replace("evergreen", "rolling"))
    with pytest.raises(PlanInvalid, match='"rolling" must be "fixed" or "evergreen"'):
        load_plan(path, settings)


def test_rehearse_an_evergreen_plan_keeps_its_promises(settings, sessions, db_url) -> None:
    from launchkit.db import make_engine
    from launchkit.orchestrator.rehearse import rehearse_plan
    from launchkit.plan import load_plan

    write_sequence(settings, "always", FILES)
    path = settings.workspace / "launch.toml"
    text = PLAN.format(entry="tag:webinar", close="entry +10d")
    path.write_text(text + '\n[[offers]]\nslug = "cours"\nprice = 497\n')
    with sessions.begin() as s:
        for i in range(40):
            sub = _person(s, f"p{i}@example.fr", "Europe/Paris" if i % 2 else None)
            audience.add_tags(s, [sub.id], ["webinar"], at=T0 + timedelta(hours=11 * i))
    engine = make_engine(db_url)
    try:
        report = rehearse_plan(settings, engine, load_plan(path, settings), seed=5)
    finally:
        engine.dispose()
    assert report["broken"] == [], report["broken"]
    assert report["buyers"] > 0 and report["late_attempts"] > 0
    assert report["simulation"]["checkout_refused"] == report["late_attempts"]
    assert report["messages"] >= 40 * 3 - report["buyers"]
    names = {c["promise"] for c in report["checks"]}
    assert "evergreen: no checkout or sale after a person's own deadline" in names


def _cli_evergreen_launch(cli, sessions, settings) -> None:
    """Launch "always" made with the CLI (tag:webinar, cart entry +7d to +10d), its sequence
    attached, Ana on the list (not tagged yet)."""
    write_sequence(settings, "always", FILES)
    made = cli("launch", "create", "always", "--product", "Cours", "--evergreen", "--entry",
               "tag:webinar", "--cart-open", "entry +7d", "--cart-close", "entry +10d")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert cli("sequence", "attach", "always", "always").exit_code == 0
    with sessions.begin() as s:
        _person(s, "ana@example.fr")


def test_cli_schedule_and_send_on_an_evergreen_launch(cli, sessions, settings) -> None:
    _cli_evergreen_launch(cli, sessions, settings)
    tagged = cli("audience", "tag", "ana@example.fr", "webinar")
    assert tagged.exit_code == 0, tagged.output
    shown = cli("schedule", "always", "--json")
    assert shown.exit_code == 0, shown.output
    with sessions.begin() as s:
        assert s.scalar(select(EvergreenEntry.subscriber_id)) is not None
        assert len(list(s.scalars(select(Send.id)))) == 3
    text = cli("schedule", "always")
    assert text.exit_code == 0, text.output
    status = cli("status", "always")
    assert status.exit_code == 0, status.output


def test_two_schedulers_racing_add_each_row_once(sessions, settings, db_url) -> None:
    import threading

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one scheduler at a time (the send lock)")
    settings = tune(settings)
    with sessions.begin() as s:
        _launch(s, settings)
        people = [_person(s, f"p{i}@example.fr") for i in range(50)]
        audience.add_tags(s, [p.id for p in people], ["webinar"], at=T0)
    barrier, errors = threading.Barrier(2), []

    def schedule() -> None:
        try:
            with sessions.begin() as s:
                launch = s.scalar(select(Launch).where(Launch.slug == "always"))
                barrier.wait()
                sequences.schedule_launch(s, settings, launch, now=T0 + timedelta(hours=1))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=schedule) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sessions.begin() as s:
        assert len(list(s.scalars(select(EvergreenEntry.id)))) == 50
        assert len(list(s.scalars(select(Send.id)))) == 150


# --- launch update: new offsets never move a date already promised -------------------------


def _entry_dates(session) -> dict[str, tuple[datetime, datetime]]:
    rows = session.execute(
        select(Subscriber.email, EvergreenEntry.cart_open_at, EvergreenEntry.cart_close_at).join(
            Subscriber, Subscriber.id == EvergreenEntry.subscriber_id
        )
    )
    return {email: (opens, closes) for email, opens, closes in rows}


def test_new_offsets_move_only_people_not_yet_told_their_dates(engine, sessions, settings):
    from tests.sendkit import FakeClock
    from tests.test_sender import run

    settings = tune(settings)
    day = timedelta(days=1)
    with sessions.begin() as s:
        _launch(s, settings, now=T0 - 10 * day)
        people = {n: _person(s, f"{n}@example.fr") for n in ("bo", "ana", "di", "cy", "eve")}
        audience.add_tags(s, [people["bo"].id], ["webinar"], at=T0 - 9 * day)  # cart open
        audience.add_tags(s, [people["ana"].id], ["webinar"], at=T0)  # will get the welcome
    # bo's welcome and cart-open email, ana's welcome: they went out, with their dates in them
    assert run(engine, settings, FakeClock(T0 + timedelta(minutes=5))).sent == 3
    now = T0 + timedelta(hours=1)
    with sessions.begin() as s:
        # entered, not told yet: di's cart opens in 11 h (it would already be open at +5d)
        audience.add_tags(s, [people["di"].id], ["webinar"], at=T0 - timedelta(days=6, hours=12))
        audience.add_tags(s, [people["cy"].id], ["webinar"], at=T0 + timedelta(minutes=30))
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        sequences.schedule_launch(s, settings, launch, now=now)
        before = _entry_dates(s)
        change = evergreen.TimingUpdate(cart_open="entry +5d", cart_close="entry +8d")
        done = evergreen.update_evergreen_launch(s, launch, change, tz=settings.tz, now=now)
        sequences.reschedule_launch(s, settings, "always")
        after = _entry_dates(s)
        welcome, last = _due(s, "01-welcome"), _due(s, "03-last")
        deadlines = dict(
            s.execute(
                select(Subscriber.email, Send.deadline_at)
                .join(Send, Send.subscriber_id == Subscriber.id)
                .where(Send.deadline_at.is_not(None))
            ).all()
        )
        sent = s.scalar(select(func.count(Send.id)).where(Send.status == "sent"))
        assert (launch.entry_cart_open, launch.entry_cart_close) == ("entry +5d", "entry +8d")
    assert (done.moved, done.kept) == (1, 3)
    for name in ("bo", "ana", "di"):
        assert after[f"{name}@example.fr"] == before[f"{name}@example.fr"], name
    cy_entry = T0 + timedelta(minutes=30)
    assert after["cy@example.fr"] == (cy_entry + 5 * day, cy_entry + 8 * day)
    assert welcome["cy@example.fr"] == cy_entry  # the entry does not move
    assert last["cy@example.fr"] == cy_entry + 8 * day - timedelta(hours=3)
    assert deadlines["cy@example.fr"] == cy_entry + 8 * day
    assert last["ana@example.fr"] == T0 + 10 * day - timedelta(hours=3)
    assert deadlines["ana@example.fr"] == T0 + 10 * day
    assert last["di@example.fr"] == T0 + timedelta(days=3, hours=9)  # entry +10d -3h
    assert sent == 3
    # a later entrant gets the new offsets
    with sessions.begin() as s:
        audience.add_tags(s, [people["eve"].id], ["webinar"], at=T0 + timedelta(hours=2))
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        sequences.schedule_launch(s, settings, launch, now=T0 + timedelta(hours=3))
        eve = _entry_dates(s)["eve@example.fr"]
    assert eve == (T0 + timedelta(hours=2) + 5 * day, T0 + timedelta(hours=2) + 8 * day)


def test_offsets_update_holds_the_queued_rows_a_sender_would_claim(
    engine, sessions, settings, db_url
):
    """PostgreSQL: while an offsets update is open, a sender's claim of a queued row of the
    launch waits for it (the update locks the queued rows before it reads who was told, so a
    claim cannot slip in between and compose an email with the dates being changed)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: a claim made meanwhile makes the update fail")
    settings = tune(settings)
    with sessions.begin() as s:
        _launch(s, settings, now=T0 - timedelta(days=1))
        cy = _person(s, "cy@example.fr")
        audience.add_tags(s, [cy.id], ["webinar"], at=T0 + timedelta(minutes=30))
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        sequences.schedule_launch(s, settings, launch, now=T0 + timedelta(hours=1))
        queued = s.scalar(select(Send.id).where(Send.status == "queued").limit(1))
    update = sessions()
    try:
        launch = update.scalar(select(Launch).where(Launch.slug == "always"))
        change = evergreen.TimingUpdate(cart_open="entry +5d", cart_close="entry +8d")
        now = T0 + timedelta(hours=1)
        evergreen.update_evergreen_launch(update, launch, change, tz=settings.tz, now=now)
        with engine.connect() as sender:
            sender.execute(text("SET lock_timeout = '300ms'"))
            with pytest.raises(sa_exc.OperationalError, match="lock"):
                sender.execute(
                    text(
                        "UPDATE sends SET status = 'sending' WHERE id = :id AND status = 'queued'"
                    ),
                    {"id": queued},
                )
    finally:
        update.rollback()
        update.close()


def test_a_new_entry_rule_takes_entrants_from_now_on(sessions, settings) -> None:
    settings = tune(settings)
    with sessions.begin() as s:
        launch = _launch(s, settings, now=T0 - timedelta(days=10))
        old, late, past, new = (_person(s, f"{n}@example.fr") for n in ("old", "late", "p", "n"))
        audience.add_tags(s, [old.id], ["webinar"], at=T0 - timedelta(days=2))
        audience.add_tags(s, [late.id], ["webinar"], at=T0 - timedelta(hours=1))  # not recorded
        audience.add_tags(s, [past.id], ["live"], at=T0 - timedelta(days=1))  # before the change
        evergreen.record_entries(s, launch, tz=settings.tz, now=T0 - timedelta(hours=2))
        change = evergreen.TimingUpdate(entry="tag:live")
        evergreen.update_evergreen_launch(s, launch, change, tz=settings.tz, now=T0)
        audience.add_tags(s, [new.id], ["live"], at=T0 + timedelta(hours=1))
        evergreen.record_entries(s, launch, tz=settings.tz, now=T0 + timedelta(hours=2))
        assert launch.entry == "tag:live" and launch.cart_open == T0
        assert set(_entry_dates(s)) == {"old@example.fr", "late@example.fr", "n@example.fr"}


def test_update_refuses_nonsense_naming_the_flag(sessions, settings) -> None:
    from launchkit.errors import InvalidTransition
    from launchkit.models import Order

    settings = tune(settings)
    with sessions.begin() as s:
        launch = _launch(s, settings)
        cases = [
            ({"cart_close": "entry +5d"}, '--cart-close: "entry +5d" is not after --cart-open'),
            ({"cart_open": "entry -1d"}, '--cart-open: "entry -1d" must be a time after'),
            ({"entry": "webinar"}, '--entry: "webinar" must be "magnet:SLUG"'),
        ]
        for kw, message in cases:
            with pytest.raises(InputError, match=re.escape(message)):
                evergreen.update_evergreen_launch(
                    s, launch, evergreen.TimingUpdate(**kw), tz=settings.tz, now=T0
                )
        assert (launch.entry, launch.entry_cart_open) == ("tag:webinar", "entry +7d")
        s.add(Order(launch_id=launch.id, email="a@example.fr", currency="EUR", total_cents=100,
                    paid_cents=100, status="paid", created_at=T0, updated_at=T0))  # fmt: skip
        s.flush()
        with pytest.raises(InvalidTransition, match='^--fixed: launch "always" has 1 order'):
            evergreen.switch_mode(s, launch, flag="--fixed", tz=settings.tz, now=T0)
        assert launch.mode == "evergreen"


def test_cli_update_offsets_and_switch_modes(cli, sessions, settings) -> None:
    _cli_evergreen_launch(cli, sessions, settings)
    assert cli("audience", "tag", "ana@example.fr", "webinar").exit_code == 0
    assert cli("schedule", "always", "--json").exit_code == 0
    ok = cli("launch", "update", "always", "--cart-open", "entry +5d", "--cart-close", "entry +8d")
    assert ok.exit_code == 0, ok.output
    assert ok.output == (
        'Updated launch "always". 1 entrant(s) moved to the new offsets, 0 kept their dates.\n'
    )
    shown = cli("launch", "show", "always")
    assert "each person's cart entry +5d to entry +8d" in shown.output
    bad = cli("launch", "update", "always", "--cart-close", "entry +4d")
    assert bad.exit_code == 1
    assert bad.stderr == (
        'Error: --cart-close: "entry +4d" is not after --cart-open "entry +5d" (launch "always"):'
        " the cart must open before it closes.\n"
    )
    pre = cli("launch", "update", "always", "--prelaunch-start", "2030-12-01 09:00")
    assert pre.exit_code == 1
    assert pre.stderr == (
        "Error: --prelaunch-start: an evergreen launch's pre-launch starts at each entry.\n"
    )
    both = cli("launch", "update", "always", "--fixed", "--evergreen")
    assert both.stderr == "Error: --evergreen and --fixed cannot be used together.\n"
    forced = cli("launch", "update", "always", "--cart-open", "entry +6d", "--force")
    assert forced.exit_code == 1 and forced.stderr.startswith("Error: --force: an evergreen")
    fixed = cli("launch", "update", "always", "--fixed", "--cart-open", "2030-12-01 09:00",
                "--cart-close", "2030-12-08 23:59")  # fmt: skip
    assert fixed.exit_code == 1  # its welcome is timed from the entry: nothing changed
    assert fixed.stderr == (
        'Error: always/01-welcome: "entry" timing is for evergreen launches '
        "(launch create --evergreen).\n"
    )
    with sessions.begin() as s:
        assert s.scalar(select(Launch.mode)) == "evergreen"


def test_cli_switch_between_fixed_and_evergreen_while_nothing_sold(cli, sessions, settings):
    files = {k: v for k, v in FILES.items() if k != "01-welcome.md"}
    write_sequence(settings, "cart", files)
    made = cli("launch", "create", "spring", "--product", "Cours", "--cart-open",
               "2030-12-01 09:00", "--cart-close", "2030-12-08 23:59")  # fmt: skip
    assert made.exit_code == 0, made.output
    with sessions.begin() as s:
        _person(s, "ana@example.fr")
    assert cli("sequence", "attach", "spring", "cart").exit_code == 0
    assert cli("schedule", "spring", "--json").exit_code == 0
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Send.id))) == 2  # ana, at the fixed dates
    until = cli("launch", "update", "spring", "--until", "2031-01-01 00:00")
    assert until.stderr == "Error: --until: only an evergreen launch has a last entry.\n"
    to_evergreen = cli("launch", "update", "spring", "--evergreen", "--entry", "tag:webinar",
                       "--cart-open", "entry +7d", "--cart-close", "entry +10d")  # fmt: skip
    assert to_evergreen.exit_code == 0, to_evergreen.output
    with sessions.begin() as s:
        launch = s.scalar(select(Launch))
        assert (launch.mode, launch.entry, launch.entry_cart_close) == (
            "evergreen", "tag:webinar", "entry +10d",
        )  # fmt: skip
        assert s.scalar(select(func.count(Send.id))) == 0  # nobody entered yet
    back = cli("launch", "update", "spring", "--fixed", "--cart-open", "2030-12-01 09:00",
               "--cart-close", "2030-12-08 23:59")  # fmt: skip
    assert back.exit_code == 0, back.output
    with sessions.begin() as s:
        assert (s.scalar(select(Launch.mode)), s.scalar(select(Launch.entry))) == ("fixed", None)
        due = set(s.scalars(select(Send.due_at)))
    assert len(due) == 2 and min(due).year == 2030
    missing = cli("launch", "update", "spring", "--evergreen", "--cart-open", "entry +7d")
    assert missing.stderr == "Error: --evergreen needs --entry magnet:SLUG or --entry tag:TAG.\n"


def test_launch_toml_new_offsets_apply_on_the_next_run(settings, sessions) -> None:
    from launchkit.orchestrator import RunContext, Step, run_plan
    from launchkit.plan import load_plan

    settings = tune(settings)
    write_sequence(settings, "always", FILES)
    path = settings.workspace / "launch.toml"
    path.write_text(PLAN.format(entry="tag:webinar", close="entry +10d"))
    with sessions.begin() as s:
        ana = _person(s, "ana@example.fr")
        audience.add_tags(s, [ana.id], ["webinar"], at=T0)
    plan = load_plan(path, settings)
    now = T0 + timedelta(minutes=10)
    run_plan(sessions, RunContext(settings, plan, now), until=Step.SCHEDULE_SEQUENCES)
    path.write_text(PLAN.format(entry="tag:webinar", close="entry +12d"))
    plan = load_plan(path, settings)
    run_plan(sessions, RunContext(settings, plan, now), until=Step.SCHEDULE_SEQUENCES)
    with sessions.begin() as s:
        launch = s.scalar(select(Launch).where(Launch.slug == "always"))
        assert launch.entry_cart_close == "entry +12d"
        assert _entry_dates(s)["ana@example.fr"] == (
            T0 + timedelta(days=7),
            T0 + timedelta(days=12),
        )
        assert _due(s, "03-last")["ana@example.fr"] == T0 + timedelta(days=12, hours=-3)
    later = RunContext(settings, plan, now + timedelta(days=1))  # the same plan: nothing moves
    run_plan(sessions, later, until=Step.SCHEDULE_SEQUENCES)
    with sessions.begin() as s:
        assert _entry_dates(s)["ana@example.fr"] == (
            T0 + timedelta(days=7),
            T0 + timedelta(days=12),
        )


def test_preview_times_an_evergreen_launch_for_a_sample_entrant(sessions, settings, tmp_path):
    settings = tune(settings, base_url="https://atelier.example")
    with sessions.begin() as s:
        launch = _launch(s, settings)  # entries taken from T0 - 1 day
        start = launch.cart_open
        items = sequences.preview_launch(s, settings, "always", tmp_path / "p", now=T0)
    assert [i.problems for i in items] == [[], [], []]
    assert [i.send_time for i in items] == [
        start,
        datetime(2026, 11, 8, 8, 0, tzinfo=UTC),  # 09:00 Paris on the day the cart opens
        start + timedelta(days=10, hours=-3),
    ]
    last = items[2].html_path.read_text(encoding="utf-8")
    assert "11 novembre" in last  # the sample entrant's own close, not the period's end
