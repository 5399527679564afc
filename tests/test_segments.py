"""Segment expressions: parsing with positioned errors, and SQL filters on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from launchkit import audience, segments
from launchkit.errors import InputError, NotFound
from launchkit.models import Subscriber, SubscriberTag
from launchkit.segments import BoolOp, Condition, Not, parse_segment


def test_parse_precedence_and_fields() -> None:
    tree = parse_segment("tag:webinar and not tag:buyer or magnet:guide-tarifs")
    assert tree == BoolOp(
        "or",
        (
            BoolOp(
                "and",
                (Condition("tag", "=", "webinar"), Not(Condition("tag", "=", "buyer"))),
            ),
            Condition("tag", "=", "magnet:guide-tarifs"),
        ),
    )
    assert parse_segment('source:magnet:checklist-lancement AND (tag:"VIP list")') == BoolOp(
        "and",
        (
            Condition("source", "=", "magnet:checklist-lancement"),
            Condition("tag", "=", "vip list"),
        ),
    )
    assert parse_segment("signed_up >= 2026-01-01") == Condition("signed_up", ">=", "2026-01-01")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("tag:webinar and", 'Segment "tag:webinar and": expected a condition at column 16'),
        ("tag:", 'Segment "tag:": expected a value after "tag:" at column 5'),
        (
            "tag:a or colour:red",
            'Segment "tag:a or colour:red": unknown field "colour" '
            "(use tag, source, status, magnet, timezone, signed_up) at column 10",
        ),
        ("(tag:a or tag:b", 'Segment "(tag:a or tag:b": expected ")" at column 16'),
        ("tag:a)", 'Segment "tag:a)": expected "and", "or" or the end, found ")" at column 6'),
        (
            "signed_up>=2026-13-01",
            'Segment "signed_up>=2026-13-01": "2026-13-01" is not a date like 2026-01-01 '
            "at column 12",
        ),
        (
            "status:gone",
            'Segment "status:gone": unknown status "gone" '
            "(use pending, active, unsubscribed, bounced, complained) at column 8",
        ),
        ("", 'Segment "": expected a condition such as tag:webinar at column 1'),
        ("not", 'Segment "not": expected a condition at column 4'),
        ('tag:"open', 'Segment "tag:"open": unexpected character at column 5'),
    ],
)
def test_parse_errors_point_at_the_column(expr: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_segment(expr)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def _add(session, email: str, *, tags=(), source=None, status="active", signed=None, tz=None):
    now = datetime(2026, 11, 20, tzinfo=UTC)
    sid = session.execute(
        insert(Subscriber).returning(Subscriber.id),
        [
            {
                "email": email,
                "status": status,
                "source": source,
                "signed_up_at": signed,
                "timezone": tz,
                "first_name": "",
                "last_name": "",
                "created_at": now,
                "updated_at": now,
            }
        ],
    ).scalar_one()
    for tag in tags:
        session.execute(insert(SubscriberTag).values(subscriber_id=sid, tag=tag))
    return sid


def _emails(session, expr: str, tz=UTC) -> list[str]:
    query = select(Subscriber.email).where(segments.segment_filter(expr, tz=tz))
    return sorted(session.scalars(query))


def test_filters_on_the_database(session) -> None:
    paris = ZoneInfo("Europe/Paris")
    _add(
        session,
        "a@x.fr",
        tags=["webinar"],
        source="webinar",
        signed=datetime(2026, 1, 1, tzinfo=UTC),
    )
    _add(
        session,
        "b@x.fr",
        tags=["webinar", "buyer"],
        signed=datetime(2025, 12, 31, 23, 30, tzinfo=UTC),
    )
    _add(session, "c@x.fr", tags=["magnet:guide-tarifs"], status="unsubscribed", tz="Europe/Paris")
    _add(session, "d@x.fr", source="instagram")
    assert _emails(session, "tag:webinar and not tag:buyer") == ["a@x.fr"]
    assert _emails(session, "tag:webinar or magnet:guide-tarifs") == ["a@x.fr", "b@x.fr", "c@x.fr"]
    assert _emails(session, "not tag:webinar") == ["c@x.fr", "d@x.fr"]
    assert _emails(session, "source:instagram or status:unsubscribed") == ["c@x.fr", "d@x.fr"]
    assert _emails(session, "timezone:Europe/Paris") == ["c@x.fr"]
    assert _emails(session, "signed_up>=2026-01-01") == ["a@x.fr"]
    assert _emails(session, "signed_up<2026-01-01") == ["b@x.fr"]
    assert _emails(session, "signed_up=2025-12-31") == ["b@x.fr"]
    # 23:30 UTC on Dec 31 is already Jan 1 in Paris
    assert _emails(session, "signed_up>=2026-01-01", tz=paris) == ["a@x.fr", "b@x.fr"]
    assert _emails(session, "signed_up<=2025-12-31", tz=paris) == []
    assert audience.count_subscribers(session, "tag:webinar") == 2
    assert audience.count_subscribers(session, "tag:webinar", statuses=None) == 2
    assert audience.count_subscribers(session, "magnet:guide-tarifs") == 0


def test_saved_segments(session, now) -> None:
    _add(session, "a@x.fr", tags=["webinar"])
    saved = segments.save_segment(session, "webinar-fans", "tag:webinar", now=now)
    assert saved.expression == "tag:webinar"
    segments.save_segment(session, "webinar-fans", "tag:webinar and not tag:buyer", now=now)
    assert [s.expression for s in segments.list_segments(session)] == [
        "tag:webinar and not tag:buyer"
    ]
    assert segments.resolve_segment(session, "webinar-fans") == "tag:webinar and not tag:buyer"
    assert segments.resolve_segment(session, "tag:buyer") == "tag:buyer"
    assert audience.count_subscribers(session, "webinar-fans") == 1
    with pytest.raises(NotFound, match='No saved segment is named "fans"'):
        segments.resolve_segment(session, "fans")
    with pytest.raises(InputError, match="expected a condition at column 11"):
        segments.save_segment(session, "bad", "tag:x and or", now=now)
    with pytest.raises(InputError, match="Segment name"):
        segments.save_segment(session, "Bad Name", "tag:x", now=now)
