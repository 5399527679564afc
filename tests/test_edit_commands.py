"""Edit commands: offer update/archive, sequence detach, magnet update/remove/archive,
launch update/delete, refused with a reason once an edit would change what was sent or sold."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import func, select

from launchkit.models import Consent, Launch, LaunchSequence, Offer, Order, Send, Subscriber
from tests.sendkit import ready_workspace

LAUNCH = [
    "launch", "create", "spring", "--product", "Atelier Photo",
    "--prelaunch-start", "2027-03-01 09:00", "--cart-open", "2027-03-08 10:00",
    "--cart-close", "2027-03-15 23:59",
]  # fmt: skip
AFTER_OPEN = "2027-03-08 10:05"


@pytest.fixture
def ready(cli, workspace_env):
    ws = ready_workspace(cli, workspace_env, launch=LAUNCH)
    r = cli("offer", "add", "spring", "cours", "--product", "Cours", "--price", "497",
            "--plan", "3x177", "--guarantee-days", "30")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    return ws


def _add_order(sessions) -> None:
    with sessions.begin() as s:
        offer = s.scalars(select(Offer)).one()
        moment = datetime(2027, 3, 9, 10, 0, tzinfo=offer.created_at.tzinfo)
        s.add(
            Order(
                launch_id=offer.launch_id, offer_id=offer.id, email="ana@example.com",
                currency="EUR", total_cents=49700, paid_cents=49700, status="paid",
                created_at=moment, updated_at=moment,
            )
        )  # fmt: skip


def _count(sessions, model) -> int:
    with sessions.begin() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


# --- offers -----------------------------------------------------------------------------------


def test_offer_update_before_any_order(cli, ready):
    r = cli("offer", "update", "cours", "--price", "447", "--plan", "4x120", "--plan", "2x230",
            "--guarantee-days", "14", "--product", "Cours photo")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith('Updated offer "cours": ')
    assert "2 plan(s), 14-day guarantee." in r.stdout
    r = cli("offer", "list", "--json")
    (offer,) = json.loads(r.stdout)
    assert (offer["price_cents"], offer["product"], offer["guarantee_days"]) == (
        44700,
        "Cours photo",
        14,
    )
    assert [p["instalments"] for p in offer["plans"]] == [2, 4]
    r = cli("offer", "update", "cours", "--no-plans")
    assert r.exit_code == 0 and "0 plan(s)" in r.stdout
    r = cli("offer", "update", "nope", "--price", "1")
    assert r.stderr == 'Error: Offer "nope" does not exist; see `launchkit offer list`.\n'


def test_offer_update_refused_once_sold(cli, ready, sessions):
    _add_order(sessions)
    r = cli("offer", "update", "cours", "--price", "447")
    assert r.exit_code == 1
    assert r.stderr == (
        'Error: Offer "cours" has 1 order(s): its price is what they paid; archive it with '
        "`launchkit offer archive` and add a new offer instead.\n"
    )
    r = cli("offer", "update", "cours", "--plan", "6x92")
    assert r.stderr == (
        'Error: Offer "cours" has 1 order(s): its plans are what they signed up for; archive '
        "it and add a new offer instead.\n"
    )
    r = cli("offer", "update", "cours", "--guarantee-days", "14")
    assert r.stderr == (
        'Error: Offer "cours" has 1 order(s) sold with a 30-day guarantee: it can grow, not '
        "shrink to 14 days.\n"
    )
    r = cli("offer", "update", "cours", "--guarantee-days", "60", "--price", "497")
    assert r.exit_code == 0, r.stderr  # same price: not a change; the guarantee grows
    assert "60-day guarantee" in r.stdout


def test_offer_archive_stops_checkout(cli, ready, sessions, settings):
    from launchkit.checkout.offers import CartClosed, start_checkout

    r = cli("offer", "archive", "cours")
    assert r.stdout.strip() == 'Archived offer "cours": no new checkouts.'
    assert cli("offer", "archive", "cours").stdout.strip() == 'Offer "cours" was already archived.'
    with sessions.begin() as s, pytest.raises(CartClosed, match="archived"):
        start_checkout(
            s, settings, None, "cours", plan=None, subscriber_id=None, email=None, bump=False,
            now=datetime.fromisoformat("2027-03-09T10:00:00+00:00"),
        )  # fmt: skip


# --- sequences --------------------------------------------------------------------------------


def test_sequence_detach_before_and_after_a_send(cli, ready, sessions):
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    assert cli("schedule", "spring").exit_code == 0
    r = cli("sequence", "detach", "spring", "mini")
    assert r.exit_code == 0, r.stderr
    assert (
        r.stdout.strip() == 'Detached sequence "mini" from launch "spring" (4 queued rows dropped).'
    )
    assert _count(sessions, LaunchSequence) == 0 and _count(sessions, Send) == 0
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    assert cli("send", "--now", AFTER_OPEN).exit_code == 0
    r = cli("sequence", "detach", "spring", "mini")
    assert r.exit_code == 1
    assert r.stderr == (
        'Error: Sequence "mini" of launch "spring" already sent 2 message(s): it stays '
        "attached; stop it with `launchkit sequence pause spring mini`.\n"
    )
    r = cli("sequence", "detach", "spring", "nope")
    assert r.stderr == 'Error: Sequence "nope" is not attached to launch "spring".\n'


# --- magnets ----------------------------------------------------------------------------------


def _magnet(cli, ready) -> None:
    pdf = ready / "guide.pdf"
    pdf.write_bytes(b"%PDF-1.4 guide")
    r = cli("magnet", "add", "guide", "--title", "Le guide", "--file", str(pdf))
    assert r.exit_code == 0, r.stderr


def test_magnet_update(cli, ready):
    _magnet(cli, ready)
    r = cli("magnet", "update", "guide", "--title", "Le guide 2027", "--url",
            "https://atelier.fr/guide", "--tag", "lead", "--language", "en")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    data = json.loads(cli("magnet", "show", "guide", "--json").stdout)
    assert (data["title"], data["url"], data["file"], data["language"]) == (
        "Le guide 2027",
        "https://atelier.fr/guide",
        None,
        "en",
    )
    assert data["tags"] == ["magnet:guide", "lead"]
    r = cli("magnet", "update", "guide", "--url", "ftp://x")
    assert r.stderr == 'Error: --url "ftp://x" must be an http:// or https:// address.\n'
    r = cli("magnet", "update", "guide", "--title", " ")
    assert r.stderr == "Error: --title must not be empty.\n"


def test_magnet_remove_without_signups_and_refused_with_them(cli, ready, sessions):
    _magnet(cli, ready)
    r = cli("magnet", "remove", "guide")
    assert r.stdout.strip() == 'Removed magnet "guide".'
    assert not (ready / "magnets" / "guide").exists()
    _magnet(cli, ready)
    with sessions.begin() as s:
        from launchkit.models import Magnet

        magnet = s.scalars(select(Magnet)).one()
        sub = s.scalars(select(Subscriber)).first()
        s.add(Consent(subscriber_id=sub.id, method="optin", magnet_id=magnet.id))
    r = cli("magnet", "remove", "guide")
    assert r.exit_code == 1
    assert r.stderr == (
        'Error: Magnet "guide" has 1 signup(s): their consent records name it; archive it '
        "instead with `launchkit magnet archive guide`.\n"
    )
    r = cli("magnet", "archive", "guide")
    assert r.stdout.strip() == 'Archived magnet "guide": its page takes no new signups.'


def test_archived_magnet_page_is_gone(cli, ready, settings):
    from starlette.testclient import TestClient

    from launchkit.web import create_app

    _magnet(cli, ready)
    with TestClient(create_app(settings)) as client:
        assert client.get("/m/guide").status_code == 200
        cli("magnet", "archive", "guide")
        assert client.get("/m/guide").status_code == 404


# --- launches ---------------------------------------------------------------------------------


def test_launch_update_refuses_the_past_and_sent_milestones(cli, ready):
    r = cli("launch", "update", "spring", "--prelaunch-start", "2020-01-06 09:00")
    assert r.exit_code == 1
    assert r.stderr == (
        'Error: Launch "spring": the prelaunch start cannot move into the past '
        "(2020-01-06T08:00:00Z); pick a time after now.\n"
    )
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    assert cli("send", "--now", AFTER_OPEN).exit_code == 0
    r = cli("launch", "update", "spring", "--cart-open", "2027-03-09 10:00")
    assert r.exit_code == 1
    assert r.stderr == (
        'Error: Launch "spring": 2 email(s) timed from the cart open already went out; '
        "moving it would change the story they told (--force moves the unsent ones).\n"
    )
    r = cli("launch", "update", "spring", "--cart-close", "2027-03-16 23:59")
    assert r.exit_code == 0, r.stderr  # the last call was not sent yet: it moves
    r = cli("launch", "update", "spring", "--cart-open", "2027-03-09 10:00", "--force")
    assert r.exit_code == 0, r.stderr


def test_launch_delete_only_when_nothing_was_sent_or_sold(cli, ready, sessions):
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    assert cli("schedule", "spring").exit_code == 0
    _add_order(sessions)
    r = cli("launch", "delete", "spring")
    assert r.stderr == 'Error: Launch "spring" has 1 order(s): it cannot be deleted.\n'
    with sessions.begin() as s:
        s.query(Order).delete()
    assert cli("send", "--now", AFTER_OPEN).exit_code == 0
    r = cli("launch", "delete", "spring")
    assert r.exit_code == 1
    assert r.stderr == (
        'Error: Launch "spring": 2 email(s) already went out; it cannot be deleted (pause its '
        "sequences with `launchkit sequence pause` instead).\n"
    )
    assert _count(sessions, Launch) == 1


def test_launch_delete_removes_sequences_rows_and_offers(cli, ready, sessions):
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    assert cli("schedule", "spring").exit_code == 0
    r = cli("launch", "delete", "spring")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == 'Deleted launch "spring".'
    for model in (Launch, LaunchSequence, Send, Offer):
        assert _count(sessions, model) == 0, model
    assert cli(*LAUNCH).exit_code == 0  # the slug is free again
