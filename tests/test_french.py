"""French that reads like French: every starter email and page, in tu, vous and English."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from launchkit.config import Settings, load_settings
from launchkit.errors import ConfigError
from launchkit.models import Order
from launchkit.render import (
    french,
    html_to_text,
    make_environment,
    parse_email_file,
    render_email,
    sample_context,
)
from launchkit.render.french import (
    NBSP,
    NNBSP,
    elide,
    email_folder,
    folder_language,
    format_moment,
    format_money,
    format_number,
    typography_html,
    typography_text,
)
from launchkit.resources import starter_dir
from launchkit.web import STRINGS, make_page_environment, strings_for
from tests.conftest import email_settings

UNSUB = "https://example.com/u/tok-123"
STARTER = starter_dir("emails")
FORMS = {"vous": "fr", "tu": "fr", "en": "en"}
KINDS = ("launch", "evergreen", "transactional")  # starter folders: KIND-fr, KIND-fr-tu, KIND-en
PRODUCTS = ("Atelier", "Oasis", "Hygge Studio")

ELISION_MISTAKES = re.compile(
    r"(?<![\w'’-])(de [AEIOUYÉÈaeiouyéè]|le [AEIOUaeiou]|que [aeiou])", re.IGNORECASE
)
TU_WORDS = re.compile(r"\b(tu|ton|ta|tes|toi)\b", re.IGNORECASE)
VOUS_WORDS = re.compile(r"\b(vous|votre|vos)\b", re.IGNORECASE)
QUOTED = re.compile(r"«[^»]*»")
URLS = re.compile(r"(https?|mailto):\S+")


def _folders(form: str) -> list[str]:
    language = FORMS[form]
    return [email_folder(kind, language, form) for kind in KINDS]


EMAILS = [
    (form, f"{folder}/{path.name}")
    for form in FORMS
    for folder in _folders(form)
    for path in sorted((STARTER / folder).glob("*.md"))
]


@pytest.fixture
def ws(tmp_path: Path) -> Settings:
    return email_settings(tmp_path)


def _render(settings: Settings, name: str, language: str, product: str) -> tuple[str, str, str]:
    """(subject + preheader, visible HTML text, plain text) of a starter email."""
    env = make_environment(settings)
    source = parse_email_file(STARTER / name)
    context = {**sample_context(language), "product": product}
    rendered = render_email(
        env, source, context, settings=settings, unsubscribe_url=UNSUB, language=language
    )
    html = re.sub(r'<span class="preheader".*?</span>', "", rendered.html, flags=re.DOTALL)
    return f"{rendered.subject}\n{rendered.preheader}", html, rendered.text


def _spacing_problems(text: str) -> list[str]:
    """French spacing mistakes: a breaking space or none before ``: ; ! ?``, none in « »."""
    text = URLS.sub("", text)
    text = re.sub(r"\b\d{1,2}:\d{2}\b", "", text)  # a time typed the English way
    text = re.sub(r"&#?\w+;", "", text)
    problems = [m[0] for m in re.finditer(r".{0,15}(?:[ \t][:;!?»]|«[ \t]).{0,5}", text)]
    problems += [m[0] for m in re.finditer(r".{0,15}[^\s\u00a0\u202f][;!?»].{0,5}", text)]
    problems += [m[0] for m in re.finditer(r".{0,15}[^\s\u00a0\u202f\d]:\s.{0,5}", text)]
    problems += [m[0] for m in re.finditer(r".{0,5}«[^\s\u00a0\u202f].{0,15}", text)]
    return problems


def _form_problems(text: str, form: str) -> list[str]:
    """Words of the other address form, outside quoted speech."""
    unquoted = QUOTED.sub("", text)
    if form == "vous":
        return TU_WORDS.findall(unquoted)
    if form == "tu":
        return VOUS_WORDS.findall(unquoted)
    return []


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize(("form", "name"), EMAILS)
def test_starter_email_reads_like_french(ws: Settings, form: str, name: str, product: str) -> None:
    language = FORMS[form]
    headers, html, text = _render(ws, name, language, product)
    visible = html_to_text(html)
    assert product in headers + visible
    for part in (headers, visible, text):
        assert not ELISION_MISTAKES.findall(part), name
        assert not _form_problems(part, form), name
        if language == "fr":
            assert _spacing_problems(part) == [], name
            assert "désabonn" not in part.lower()
    lines = [line.strip() for line in text.splitlines()]
    assert not [line for line in lines if line.startswith((":", "»", ";", "!", "?"))]
    if language == "fr":
        assert "Se désinscrire" in visible and "Se désinscrire" in text
    # the sign-off and the name on lines of their own, in both parts
    assert "Élodie" in lines
    assert re.search(r"<p[^>]*>Élodie</p>", html)


def test_every_french_email_exists_in_both_forms() -> None:
    for kind in KINDS:
        vous = sorted(p.name for p in (STARTER / f"{kind}-fr").glob("*.md"))
        tu = sorted(p.name for p in (STARTER / f"{kind}-fr-tu").glob("*.md"))
        english = sorted(p.name for p in (STARTER / f"{kind}-en").glob("*.md"))
        assert vous == tu == english and vous


def test_the_check_finds_the_mistakes_it_looks_for() -> None:
    assert ELISION_MISTAKES.findall("le cœur de Atelier, je te parlerai de Oasis")
    assert not ELISION_MISTAKES.findall("le cœur d'Atelier, au-delà de l'email")
    assert _spacing_problems("Aujourd'hui : la question")
    assert _spacing_problems("« Confirmez »")
    assert _spacing_problems("Vraiment?")
    assert not _spacing_problems(typography_text("Aujourd'hui : « Confirmez » ? Oui !"))
    assert _form_problems("Merci pour ta confiance", "vous") == ["ta"]
    assert _form_problems("Pas « t'en penses quoi ? » ni « tu vois »", "vous") == []
    assert _form_problems("Merci pour votre confiance", "tu") == ["votre"]


# --- the filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "following", "expected"),
    [
        ("de", "Atelier", "d'Atelier"),
        ("de", "Oasis", "d'Oasis"),
        ("de", "Élan", "d'Élan"),
        ("de", "Watercolour", "de Watercolour"),
        ("de", "hasard", "de hasard"),
        ("le", "homme", "l'homme"),
        ("De", "Atelier", "D'Atelier"),
        ("que", "il", "qu'il"),
        ("le", "huit", "le huit"),
        ("jusque", "au", "jusqu'au"),
    ],
)
def test_elide(word: str, following: str, expected: str) -> None:
    assert elide(word, following) == expected


def test_elide_filter_in_email_templates(ws: Settings) -> None:
    env = make_environment(ws)
    template = env.from_string('{{ "de" | elide(product) }} / {{ product | de }} / {{ x | le }}')
    assert template.render(product="Atelier", x="atelier") == "d'Atelier / d'Atelier / l'atelier"
    plain = env.from_string('{{ "de" | elide(product) }}').render(product="Studio")
    assert plain == "de Studio"


def test_typography_never_touches_tags_entities_urls_or_adds_characters() -> None:
    html = (
        '<p style="color: red !important">Bonjour : « ok » ?</p>'
        '<a href="https://x.example/c?t=1">Lien : ici</a>&amp;<style>a { b: c !important; }</style>'
    )
    out = typography_html(html)
    assert out == (
        f'<p style="color: red !important">Bonjour{NBSP}: «{NBSP}ok{NBSP}»{NNBSP}?</p>'
        f'<a href="https://x.example/c?t=1">Lien{NBSP}: ici</a>&amp;'
        "<style>a { b: c !important; }</style>"
    )
    assert typography_text("Camille!; &lt;b&gt;") == "Camille!; &lt;b&gt;"
    assert (
        typography_text("Lien : https://x.example/a?b=c !")
        == f"Lien{NBSP}: https://x.example/a?b=c{NNBSP}!"
    )


# --- dates, money, numbers -------------------------------------------------------------------


def _whole_text(text: str) -> str:
    """typography_text as first written: the whole text at once, no line memo."""
    parts = french._URL.split(text)
    return "".join(p if i % 2 else french._typography(p) for i, p in enumerate(parts))


def _whole_html(html: str) -> str:
    out = []
    for index, block in enumerate(french._RAW_TEXT.split(html)):
        if index % 3 == 1:
            out.append(block)
        elif index % 3 == 0:
            parts = french._TAGS_AND_ENTITIES.split(block)
            out.append("".join(p if i % 2 else _whole_text(p) for i, p in enumerate(parts)))
    return "".join(out)


_TYPO_PIECES = st.sampled_from(
    [" ", "\n", "\u00a0", "\u202f", ":", ";", "!", "?", "«", "»", "<", ">", "&", "#", "amp;",
     "<p>", "</p>", "<a href=\"https://x.fr/a?b=c :\">", "</a>", "<br\n/>", '<a\ntitle="a :">',
     "<style>", "</style>",
     "<script>a ! b</script>", "https://x.fr/a?b=c", "www.x.fr", "mailto:", "a@b.fr", "Camille",
     "é", "_", "-", ".", "\t", "\r", "(", ")"]
)  # fmt: skip


@hsettings(max_examples=3000, deadline=None)
@given(pieces=st.lists(_TYPO_PIECES | st.text(max_size=3), max_size=40))
def test_typography_line_by_line_equals_the_whole_text(pieces: list[str]) -> None:
    """The line memo is exact: the same result as the whole text done at once, byte for byte,
    for text full of marks, spaces, line breaks, tags split across lines, URLs and raw blocks
    (and again on a second call, from the memo)."""
    text = "".join(pieces)
    for _ in range(2):
        assert typography_text(text) == _whole_text(text)
        assert typography_html(text) == _whole_html(text)


def test_typography_of_every_starter_email_equals_the_whole_text() -> None:
    for path in sorted(STARTER.rglob("*")):
        if path.is_file() and path.suffix in (".md", ".html", ".txt"):
            text = path.read_text(encoding="utf-8")
            assert typography_text(text) == _whole_text(text), path
            assert typography_html(text) == _whole_html(text), path


def test_french_times_dates_and_money() -> None:
    moment = datetime(2026, 12, 5, 22, 59, tzinfo=UTC)
    assert format_moment(moment, "fr", "Europe/Paris") == (
        "samedi 5 décembre à 23 h 59 (heure de Paris)"
    )
    assert format_moment(moment, "fr", "America/New_York") == (
        "samedi 5 décembre à 17 h 59 (heure de New York)"
    )
    assert format_moment(moment, "en", "Europe/Paris") == "Saturday, December 5 at 11:59 PM CET"
    summer = datetime(2026, 7, 1, 21, 59, tzinfo=UTC)
    assert format_moment(summer, "en", "Europe/Paris").endswith("11:59 PM CEST")
    assert format_moment(moment, "fr", "Europe/Amsterdam").endswith("(heure d'Amsterdam)")
    assert format_money(123456, "EUR", "fr") == f"1{NNBSP}234,56{NBSP}€"
    assert format_money(123456, "EUR", "en") == "€1,234.56"
    assert format_number(12345, "fr") == f"12{NNBSP}345"
    assert format_number(2.5, "fr") == "2,5"
    assert format_number(12345, "en") == "12,345"


# --- the setting and the folders -------------------------------------------------------------


def test_address_form_setting(tmp_path: Path) -> None:
    (tmp_path / "launchkit.toml").write_text('[workspace]\naddress_form = "tu"\n')
    assert load_settings(tmp_path, env={}).address_form == "tu"
    (tmp_path / "launchkit.toml").write_text("[workspace]\n")
    assert load_settings(tmp_path, env={}).address_form == "vous"
    (tmp_path / "launchkit.toml").write_text('[workspace]\naddress_form = "toi"\n')
    with pytest.raises(ConfigError, match='Address form "toi"'):
        load_settings(tmp_path, env={})


def test_folders_by_form() -> None:
    assert email_folder("transactional", "fr", "vous") == "transactional-fr"
    assert email_folder("transactional", "fr", "tu") == "transactional-fr-tu"
    assert email_folder("transactional", "en", "tu") == "transactional-en"
    assert folder_language("launch-fr-tu") == "fr"
    assert folder_language("launch-fr") == "fr"
    assert folder_language("launch-en") == "en"
    assert folder_language("promo") is None


def test_transactional_email_follows_the_address_form(ws: Settings) -> None:
    from dataclasses import replace

    from launchkit import mailer

    env = make_environment(ws)
    for form, word in (("tu", "ton"), ("vous", "votre")):
        settings = replace(ws, language="fr", address_form=form)
        source = mailer.transactional_source(settings, env, "confirm-optin")
        assert source.path.parent.name == email_folder("transactional", "fr", form)
        rendered = render_email(
            env, source, sample_context("fr"), settings=settings, unsubscribe_url=UNSUB
        )
        assert re.search(rf"\b{word}\b", rendered.text)


# --- pages -----------------------------------------------------------------------------------

PAGES = sorted(
    p.name
    for p in starter_dir("templates").glob("*.html")
    if p.name not in ("base.html", "report.html", "compare.html")
)


def _page_text(settings: Settings, page: str, strings: dict[str, str]) -> str:
    env = make_page_environment(settings)
    env.undefined = jinja2.ChainableUndefined
    context = {
        "t": strings,
        "site_name": "Atelier",
        "postal_address": "12 rue des Lilas",
        "page_title": strings.get("sent_title", ""),
        "title": strings["error_title"],
        "message": strings["not_found"],
        "email": "camille@example.com",
        "lead": strings["unsubscribed_lead"],
        "status": 404,
        "errors": {},
        "values": {},
    }
    html = env.get_template(page).render(context)
    return html_to_text(html)


@pytest.mark.parametrize("form", FORMS)
def test_page_strings_read_like_french(ws: Settings, form: str) -> None:
    language = FORMS[form]
    strings = strings_for(language, form)
    assert set(strings) == set(STRINGS["en"])
    for key, value in strings.items():
        assert not ELISION_MISTAKES.findall(value), key
        assert not _form_problems(value, form), key
        if language == "fr":
            assert _spacing_problems(value) == [], key
    if language == "fr":
        assert strings["unsub_title"] == "Se désinscrire"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_reads_like_french(ws: Settings, form: str, page: str) -> None:
    language = FORMS[form]
    text = _page_text(ws, page, strings_for(language, form))
    assert not ELISION_MISTAKES.findall(text)
    assert not _form_problems(text, form), page
    if language == "fr":
        assert _spacing_problems(re.sub(r"\{\{.*?\}\}", "", text)) == [], page


# --- CLI tables --------------------------------------------------------------------------------


def test_cli_tables_print_numbers_the_workspace_way(tmp_path: Path, capsys) -> None:
    from launchkit.cli import output
    from launchkit.cli.runtime import Runtime

    (tmp_path / "launchkit.toml").write_text('[workspace]\nlanguage = "fr"\n')
    try:
        Runtime(workspace_flag=tmp_path, env={}).settings  # loading French settings switches
        assert output.cell(12345) == f"12{NNBSP}345"
        assert output.cell(2.5) == "2,5"
        assert output.cell(True) == "True" and output.cell(None) == "" and output.cell("a") == "a"
        assert output.percent(0.035) == f"3,50{NBSP}%"
        assert output.money(123456, "EUR") == f"1{NNBSP}234,56{NBSP}€"
        output.print_table(None, ["audience"], [[29328]])
        assert f"29{NNBSP}328" in capsys.readouterr().out
        output.use_language("en")
        assert output.cell(12345) == "12345"
        assert output.percent(0.035) == "3.50%"
        assert output.money(123456, "EUR") == "1,234.56 EUR"
    finally:
        output.use_language("en")


def test_moment_with_year_for_pages() -> None:
    moment = datetime(2026, 11, 25, 22, 59, tzinfo=UTC)
    assert format_moment(moment, "fr", "Europe/Paris", year=True) == (
        "mercredi 25 novembre 2026 à 23 h 59 (heure de Paris)"
    )
    assert format_moment(moment, "en", "Europe/Paris", year=True) == (
        "Wednesday, November 25, 2026 at 11:59 PM CET"
    )


# --- the receipt a buyer can keep (#19) --------------------------------------------------------

from tests.test_checkout_events import Outbox, deliver, shop  # noqa: E402, F401


def test_receipt_has_order_schedule_guarantee_end_in_each_form(sessions, settings, shop, now):  # noqa: F811
    from dataclasses import replace

    from launchkit.stripe_events import Purchase

    ts = int(now.timestamp())
    for form, word in {"vous": "Votre commande", "tu": "Ta commande"}.items():
        outbox = Outbox()
        plan = Purchase(shop["plan"], f"{form}@example.fr", 17700, "EUR", instalments=3)
        buyer = replace(settings, address_form=form)
        deliver(sessions, buyer, [plan.invoice(1, ts)], now, messenger=outbox)
        [receipt] = [m for m in outbox.sent if m.subject.startswith("Bienvenue")]
        with sessions.begin() as s:
            order = s.scalars(select(Order).where(Order.email == f"{form}@example.fr")).one()
            order_id = order.id
        text = receipt.text

        assert f"Numéro de commande{NBSP}: {order_id}" in text
        assert re.search(rf"1/3 · 177,00{NBSP}€ · payée le \w+ \d+ \w+ 20\d\d", text)
        assert re.search(r"3/3 · 177,00\xa0€ · prévue le \w+ \d+ \w+ 20\d\d", text)
        assert re.search(r"jusqu'au \w+ \d+ \w+ à \d+ h \d\d \(heure de Paris\)", text)
        assert word in text and not _form_problems(text, form)
        assert _spacing_problems(text.split("\n-- \n")[0]) == []


# --- the "check your inbox" page names the email that was sent (#17) -------------------------


@pytest.mark.parametrize("form", ["vous", "tu"])
def test_check_your_inbox_page_names_the_real_subject(settings, smtp_sink, now, form) -> None:
    from email.header import decode_header, make_header
    from html import unescape

    from tests.test_web import make_web, post_optin

    for web in make_web(settings, smtp_sink, now, address_form=form):
        assert post_optin(web).status_code == 303
        [mail] = web.sink.wait_for(1)
        subject = str(make_header(decode_header(mail["Subject"])))
        page = unescape(web.client.get("/m/guide/sent").text)
        assert f"«{NBSP}{subject}{NBSP}»" in page
        visible = html_to_text(page)
        assert not _form_problems(visible, form)
        assert ("Vérifiez votre" if form == "vous" else "Vérifie ta") in visible


def test_receipt_links_stripes_receipt_and_states_the_tax(sessions, settings, shop, now):  # noqa: F811
    from launchkit.checkout.notifications import receipt_details
    from launchkit.stripe_events import Purchase

    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    paid = deal.paid(ts)
    stripe_page = "https://pay.stripe.com/receipts/acct_1/ch_1/rcpt_1"
    paid["data"]["object"]["latest_charge"] = {"id": deal.charge(1), "receipt_url": stripe_page}
    outbox = Outbox()
    deliver(sessions, settings, [paid, deal.completed(ts + 1)], now, messenger=outbox)
    [receipt] = [m for m in outbox.sent if m.subject.startswith("Bienvenue")]
    assert stripe_page in receipt.text and "Dont TVA" not in receipt.text
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        order.tax_cents = 8283
        details = receipt_details(s, order, settings, now=now)
    assert details["tax"] == "82,83\xa0€" and details["receipt_url"] == stripe_page
    with sessions.begin() as s:  # an address that is not https is never kept
        from launchkit.checkout.events import _keep_receipt_link
        from launchkit.models import Payment

        _keep_receipt_link(s, "pi_none", "javascript:alert(1)")
        assert s.scalars(select(Payment.receipt_url)).all() == [stripe_page]
