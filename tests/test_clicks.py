"""First-party click tracking: links of sent launch emails go through /c/TOKEN (#18)."""

from __future__ import annotations

import email
import html
import re
from datetime import UTC, datetime, timedelta
from email import policy

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from launchkit import sequences
from launchkit.models import Link, LinkClick, Subscriber, WebEvent
from launchkit.tokens import Purpose, make_token, read_token
from launchkit.web import create_app
from tests.sendkit import CART_OPEN, FakeClock, populate, tune, write_sequence

BEFORE = CART_OPEN - timedelta(days=3)
PROGRAMME = "https://example.org/programme?a=1&b=2"
LINKS = {
    "01-open.md": (
        '---\nsubject: "{{ product }} est ouvert"\nsend_at: "cart_open +0h"\nkind: sales\n---\n'
        "Bonjour {{ first_name }},\n\n"
        f"Lisez [le programme]({PROGRAMME}) puis\n"
        "[écrivez-moi](mailto:hello@example.com).\n\n"
        "[Je m'inscris]({{ checkout_url }})\n"
    ),
}
HREF = re.compile(r'<a [^>]*?href="([^"]*)"')


def _send(engine, sessions, settings, smtp_sink, count=3, **kw):
    settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url, **kw)
    write_sequence(settings, "links", LINKS)
    ids = populate(sessions, settings, count, now=BEFORE, sequence="links")
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    report = sequences.send_due(
        engine, settings, clock=clock, sleep=clock.sleep, options=sequences.SendOptions()
    )
    assert report.sent == count
    messages = [email.message_from_bytes(m.raw, policy=policy.default) for m in smtp_sink.messages]
    return settings, ids, messages


def _parts(message) -> tuple[list[str], str]:
    body = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    return [html.unescape(h) for h in HREF.findall(body)], text


def _count(sessions, model, *where) -> int:
    with sessions.begin() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)))


def test_sent_links_go_through_c_and_redirect_only_to_the_recorded_url(
    engine, sessions, settings, smtp_sink
):
    settings, ids, messages = _send(engine, sessions, settings, smtp_sink)
    base = settings.base_url.rstrip("/")
    with sessions.begin() as s:
        links = {link.url: (link.id, link.personal) for link in s.scalars(select(Link))}
    checkout = f"{base}/buy/spring?t={{checkout}}"
    assert set(links) == {PROGRAMME, checkout}  # once per email, not per recipient
    assert links[checkout][1] == "checkout" and links[PROGRAMME][1] is None
    by_address = {m["To"].addresses[0].addr_spec: m for m in messages}
    app = create_app(settings, clock=lambda: CART_OPEN + timedelta(hours=1))
    with TestClient(app, follow_redirects=False) as client:
        for index, sid in enumerate(ids):
            message = by_address[f"n{index:05d}@example.com"]
            hrefs, text = _parts(message)
            tracked = [h for h in hrefs if h.startswith(f"{base}/c/")]
            assert len(tracked) == 2, hrefs
            assert "mailto:hello@example.com" in hrefs
            unsubscribe = message["List-Unsubscribe"]
            assert f"{base}/u/" in unsubscribe and "/c/" not in unsubscribe
            assert any(h.startswith(f"{base}/u/") for h in hrefs)
            assert PROGRAMME not in text and "/buy/" not in text
            assert all(url in text for url in tracked)
            programme, buy = (client.get(u.removeprefix(base)) for u in tracked)
            assert programme.status_code == 302
            assert programme.headers["location"] == PROGRAMME
            assert buy.status_code == 302
            target = buy.headers["location"]
            assert target.startswith(f"{base}/buy/spring?t=")
            personal = read_token(settings, Purpose.CHECKOUT, target.partition("?t=")[2])
            assert personal == {"s": sid}
            assert client.head(tracked[0].removeprefix(base)).status_code == 302  # not counted
    assert _count(sessions, LinkClick) == 2 * len(ids)
    assert _count(sessions, WebEvent, WebEvent.kind == "click") == 2 * len(ids)
    with sessions.begin() as s:
        clicks = s.execute(select(LinkClick.subscriber_id, LinkClick.email_id)).all()
    assert sorted(c[0] for c in clicks) == sorted(ids * 2)
    assert all(c[1] is not None for c in clicks)


def test_forged_and_open_redirect_tokens_are_refused(engine, sessions, settings, smtp_sink):
    settings, ids, messages = _send(engine, sessions, settings, smtp_sink, count=1)
    base = settings.base_url.rstrip("/")
    hrefs, _ = _parts(messages[0])
    token = next(h for h in hrefs if h.startswith(f"{base}/c/")).removeprefix(f"{base}/c/")
    with sessions.begin() as s:
        link_id = s.scalar(select(func.max(Link.id)))
    attempts = [
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),  # signature damaged
        "https:%2F%2Fevil.example%2F",
        make_token(settings, Purpose.CHECKOUT, {"l": link_id, "s": ids[0]}),  # other purpose
        make_token(settings, Purpose.CLICK, {"l": link_id + 99, "s": ids[0]}),  # no such link
        make_token(settings, Purpose.CLICK, {"u": "https://evil.example/"}),
    ]
    with TestClient(create_app(settings), follow_redirects=False) as client:
        for bad in attempts:
            response = client.get(f"/c/{bad}")
            assert response.status_code == 404, bad
            assert "location" not in response.headers
        sneaky = client.get(f"/c/{token}?url=https://evil.example/&next=https://evil.example/")
        assert sneaky.status_code == 302
        assert "evil" not in sneaky.headers["location"]
    assert _count(sessions, LinkClick) == 1


def test_track_clicks_false_keeps_direct_links(engine, sessions, settings, smtp_sink):
    settings, ids, messages = _send(engine, sessions, settings, smtp_sink, track_clicks=False)
    base = settings.base_url.rstrip("/")
    for message in messages:
        hrefs, text = _parts(message)
        assert PROGRAMME in hrefs and PROGRAMME in text
        assert any(h.startswith(f"{base}/buy/spring?t=") for h in hrefs)
        assert not any("/c/" in h for h in hrefs) and f"{base}/c/" not in text
    assert _count(sessions, Link) == 0


def test_a_link_carrying_the_address_stays_direct(engine, sessions, settings, smtp_sink):
    survey = "\n[Sondage](https://survey.example/?who={{ email }})\n"
    files = {"01-open.md": LINKS["01-open.md"] + survey}
    settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    write_sequence(settings, "links", files)
    populate(sessions, settings, 2, now=BEFORE, sequence="links")
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    options = sequences.SendOptions()
    sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep, options=options)
    for item in smtp_sink.messages:
        message = email.message_from_bytes(item.raw, policy=policy.default)
        hrefs, _ = _parts(message)
        address = message["To"].addresses[0].addr_spec
        assert f"https://survey.example/?who={address}" in hrefs
    with sessions.begin() as s:
        assert not [u for u in s.scalars(select(Link.url)) if "example.com" in u]
    assert _count(sessions, Subscriber) == 2


def test_erased_or_expired_clicks_are_not_linked_to_anyone(engine, sessions, settings, smtp_sink):
    from launchkit import privacy

    settings, ids, messages = _send(engine, sessions, settings, smtp_sink, count=2)
    base = settings.base_url.rstrip("/")
    by_address = {m["To"].addresses[0].addr_spec: m for m in messages}
    first = [h for h in _parts(by_address["n00000@example.com"])[0] if "/c/" in h]
    second = [h for h in _parts(by_address["n00001@example.com"])[0] if "/c/" in h]
    with sessions.begin() as s:
        privacy.erase_person(s, "n00000@example.com", now=CART_OPEN)
    signed = datetime.now(UTC)  # tokens carry the wall-clock time they were signed at
    late = signed + settings.unsubscribe_link_max_age + timedelta(days=2)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        buy = client.get(first[1].removeprefix(base))
        assert buy.headers["location"] == f"{base}/buy/spring?t="  # no token for an erased person
    with TestClient(create_app(settings, clock=lambda: late), follow_redirects=False) as client:
        old = client.get(second[1].removeprefix(base))
        assert old.status_code == 302 and old.headers["location"] == f"{base}/buy/spring?t="
        assert client.get(second[0].removeprefix(base)).headers["location"] == PROGRAMME
    with sessions.begin() as s:
        assert s.execute(select(LinkClick.subscriber_id)).scalars().all() == [None]
        assert s.scalar(select(func.count()).where(WebEvent.subscriber_id.is_not(None))) == 0


def test_rewrite_links_exactly_the_hrefs_and_text_urls() -> None:
    from launchkit.clicks import rewrite_links

    page = (
        '<p><a href="https://a.example/x?a=1&amp;b=2" title="a > b href=&quot;q&quot;">A</a>'
        '<abbr href="https://no.example/">n</abbr><a download="" href="mailto:x@example.com">m</a>'
        '<!-- <a href="https://comment.example/"> --><a href="https://a.example/">short</a></p>'
    )
    text = (
        "A (https://a.example/x?a=1&b=2). Short: https://a.example/, "
        "longer https://a.example/other! mail mailto:x@example.com\n"
    )
    seen: list[str] = []

    def resolve(url: str) -> str:
        seen.append(url)
        return f"https://t.example/c/{len(seen)}"

    html, plain = rewrite_links(page, text, resolve)
    assert seen == [
        "https://a.example/x?a=1&b=2",
        "https://a.example/",
        "https://a.example/other",
    ]  # once each, HTML first; never the abbr, the comment or mailto
    assert html == page.replace(
        'href="https://a.example/x?a=1&amp;b=2"', 'href="https://t.example/c/1"'
    ).replace('href="https://a.example/"', 'href="https://t.example/c/2"')
    assert plain == (
        "A (https://t.example/c/1). Short: https://t.example/c/2, "
        "longer https://t.example/c/3! mail mailto:x@example.com\n"
    )


# the pattern before it started with its shared `<` (kept here as the reference)
_REFERENCE_A_HREF = re.compile(r'<!--.*?-->|(<a(?: [^\s"\'>/=]+="[^"]*")*? href=")([^"]*)(")', re.S)


def _reference_rewrite_html(page: str, resolve) -> str:
    """The HTML half of ``rewrite_links`` as written with the reference pattern."""
    done: dict[str, str | None] = {}

    def in_html(match: re.Match[str]) -> str:
        if match[1] is None:
            return match[0]
        url = html.unescape(match[2])
        if url not in done:
            web = url[:8].lower().startswith(("http://", "https://"))
            done[url] = resolve(url) if web else None
        new = done[url]
        return match[0] if new is None else f"{match[1]}{html.escape(new)}{match[3]}"

    return _REFERENCE_A_HREF.sub(in_html, page)


_URLS = st.sampled_from(
    [
        "https://a.example/",
        "HTTP://b.example/x?a=1&amp;b=2",
        "https://c.example/&quot;q",
        "mailto:x@example.com",
        "ftp://d.example/",
        "",
        "https://e.example/<!--",
    ]
)
_ATTRIBUTES = st.lists(
    st.sampled_from(
        [
            'class="button"',
            'title="a > b href=&quot;q&quot;"',
            'download=""',
            "data-x='y'",
            'style="color:red"',
            "disabled",
            'x-href="https://f.example/"',
            'href=""',
        ]
    ),
    max_size=3,
).map(lambda attrs: "".join(" " + a for a in attrs))
_PIECES = st.one_of(
    st.sampled_from(
        [
            "text",
            "<p>",
            "</a>",
            "<!--",
            "-->",
            "<!-- x -->",
            "<!->",
            "->",
            "--",
            '<!-- -> <a href="https://h.example/"> -->',
            "<",
            "<a",
            "<a>",
            "<a ",
            '&lt;a href="https://g.example/"&gt;',
            '"',
            ' href="',
            "<br/>",
            '<ahref="x">',
        ]
    ),
    st.builds(
        lambda tag, attrs, url, space: f'<{tag}{attrs}{space}href="{url}">',
        st.sampled_from(["a", "A", "abbr", "area", "a", "a"]),
        _ATTRIBUTES,
        _URLS,
        st.sampled_from([" ", " ", "  ", "\n"]),
    ),
)


@given(st.lists(_PIECES, max_size=25), st.sets(st.integers(0, 6)))
@hypothesis_settings(max_examples=400, deadline=None)
def test_rewrite_links_html_matches_the_reference_pattern(pieces, kept) -> None:
    """Exactly the replacements of the reference pattern, on HTML with comments (closed,
    unclosed, holding anchors), <a> tags with various attributes, <abbr>, <area>, stray `<`."""
    from launchkit.clicks import rewrite_links

    def resolve(url: str) -> str | None:  # some links stay direct
        return None if len(url) % 7 in kept else f"https://t.example/c/{len(url)}?a=1&b=<2>"

    page = "".join(pieces)
    assert rewrite_links(page, "", resolve)[0] == _reference_rewrite_html(page, resolve)
