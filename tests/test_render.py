"""render.py: front matter, the hardened sandbox, Markdown, plain text, lint, the starter kit."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from launchkit import render as render_package
from launchkit.config import Settings
from launchkit.errors import InputError
from launchkit.render import (
    _MD_SPECIALS,
    EmailSource,
    RenderedEmail,
    check_header_value,
    html_to_text,
    lint_email,
    make_environment,
    markdown_parts,
    markdown_to_html,
    parse_email_file,
    render_email,
    sample_context,
)
from launchkit.render import text as markdown_text
from launchkit.render.french import folder_language
from launchkit.resources import starter_dir
from tests.conftest import email_settings

UNSUB = "https://example.com/u/tok-123"
SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1"))


@pytest.fixture
def ws_settings(tmp_path: Path) -> Settings:
    return email_settings(tmp_path)


def write_email(settings: Settings, name: str, body: str, **front: str) -> Path:
    """Write ``emails/<name>`` with a front matter (subject defaults to "Hello")."""
    path = settings.emails_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    front = {"subject": '"Hello {{ first_name }}"', **front}
    header = "".join(f"{k}: {v}\n" for k, v in front.items())
    path.write_text(f"---\n{header}---\n{body}", encoding="utf-8")
    return path


def render(settings: Settings, path: Path, **context: Any) -> RenderedEmail:
    env = make_environment(settings)
    values = {**sample_context("en"), **context}
    return render_email(
        env, parse_email_file(path), values, settings=settings, unsubscribe_url=UNSUB
    )


# --- parsing -------------------------------------------------------------------------------


def test_parse_email_file_reads_front_matter_and_body(ws_settings: Settings) -> None:
    path = write_email(
        ws_settings,
        "launch-fr/04-cart-open.md",
        "Bonjour\n",
        preheader='"Ça ouvre"',
        send_at='"cart_open +0h"',
        skip_if='"tag:buyer"',
        local="true",
    )
    source = parse_email_file(path)
    assert source.step == "04-cart-open"
    assert source.subject == "Hello {{ first_name }}"
    assert source.preheader == "Ça ouvre"
    assert source.body == "Bonjour\n"
    assert source.is_markdown
    assert source.meta["send_at"] == "cart_open +0h"
    assert source.meta["local"] is True
    assert source.meta["skip_if"] == "tag:buyer"
    assert source.body_line == 8
    assert source.display_name == "launch-fr/04-cart-open.md"


def test_parse_email_file_names_file_and_line_on_bad_yaml(ws_settings: Settings) -> None:
    path = ws_settings.emails_dir / "seq" / "01-a.md"
    path.parent.mkdir()
    path.write_text('---\nsubject: "ok"\npreheader: [unclosed\n---\nbody\n')
    with pytest.raises(InputError, match=r'^Email "seq/01-a.md" line \d: invalid front matter'):
        parse_email_file(path)


BAD = 'Email "seq/01-a.md"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\npreheader: x\n---\nbody", f'{BAD} line 1: the front matter has no "subject".'),
        ('---\nsubject: ""\n---\nbody', f'{BAD} line 1: the front matter has no "subject".'),
        ("subject: x\nbody", f'{BAD} line 1: expected front matter starting with "---".'),
        ("---\nsubject: x\nbody", f'{BAD}: the front matter is not closed by a "---" line.'),
        ("---\n- a\n---\nbody", f'{BAD} line 2: the front matter must be "key: value" lines.'),
    ],
)
def test_parse_email_file_refuses_bad_files(ws_settings: Settings, text: str, message: str) -> None:
    path = ws_settings.emails_dir / "seq" / "01-a.md"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(InputError) as info:
        parse_email_file(path)
    assert str(info.value) == message


# --- header values -------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x1e"])
def test_check_header_value_refuses_line_breaks(char: str) -> None:
    with pytest.raises(InputError, match=r"^Subject contains a line break or control character"):
        check_header_value(f"Hello{char}Bcc: victim@example.com", "Subject")


def test_check_header_value_keeps_ordinary_text() -> None:
    value = "Café ☕, 50 % off — «today»\tonly"
    assert check_header_value(value, "Subject") == value


# --- rendering -----------------------------------------------------------------------------


def test_render_markdown_email_has_layout_button_footer_and_text(ws_settings: Settings) -> None:
    path = write_email(
        ws_settings,
        "launch-en/04-open.md",
        "Hi {{ first_name }},\n\n**Doors are open.** Read [the FAQ]({{ checkout_url }}/faq).\n\n"
        "[Join {{ product }}]({{ checkout_url }})\n\n- one\n- two\n",
        preheader='"Until {{ cart_close }}"',
    )
    rendered = render(ws_settings, path)
    assert rendered.subject == "Hello Camille"
    assert rendered.preheader == "Until Friday, December 5 at 11:59 PM CET"
    html = rendered.html
    assert '<html lang="en"' in html
    assert re.search(r'<a class="button" href="https://example.com/checkout/atelier"', html)
    assert re.search(r'<a href="https://example.com/checkout/atelier/faq"', html)
    assert f'href="{UNSUB}"' in html
    assert "Atelier Élodie" in html and "75011 Paris" in html
    assert "style=" in html  # CSS inlined
    assert "<strong" in html and "<li" in html
    text = rendered.text
    assert text.startswith("Hi Camille,\n\nDoors are open. Read the FAQ (https://example.com/")
    assert "Join Watercolour Workshop (https://example.com/checkout/atelier)" in text
    assert "- one\n- two" in text
    assert f"Unsubscribe: {UNSUB}" in text
    assert "12 rue des Lilas\n75011 Paris" in text
    assert lint_email(rendered, parse_email_file(path), postal_address="12 rue des Lilas") == []


def test_language_comes_from_the_folder_or_the_argument(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "launch-fr/01.md", "Salut\n")
    assert "Se désinscrire" in render(ws_settings, path).html
    env = make_environment(ws_settings)
    rendered = render_email(
        env,
        parse_email_file(path),
        sample_context(),
        settings=ws_settings,
        unsubscribe_url=UNSUB,
        language="en",
    )
    assert "Unsubscribe" in rendered.html and '<html lang="en"' in rendered.html


def test_txt_sibling_is_used_for_the_plain_part(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", "HTML version {{ first_name }}\n")
    path.with_suffix(".txt").write_text("Plain & simple, {{ first_name }} <3\n")
    rendered = render(ws_settings, path, first_name="Zoé <b>")
    assert rendered.text.startswith("Plain & simple, Zoé <b> <3\n")
    assert "HTML version Zoé &lt;b&gt;" in rendered.html


def test_html_email_is_autoescaped(ws_settings: Settings) -> None:
    path = write_email(
        ws_settings,
        "seq/01-a.html",
        '<p>Hi {{ first_name }}</p><p><a href="{{ checkout_url }}">Go</a></p>\n',
    )
    rendered = render(ws_settings, path, first_name="<img src=x onerror=alert(1)>")
    assert "<img src=x" not in rendered.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered.html
    assert "Go (https://example.com/checkout/atelier)" in rendered.text


def test_html_email_can_extend_the_layout_itself(ws_settings: Settings) -> None:
    path = write_email(
        ws_settings,
        "seq/01-page.html",
        '{% extends "base.html" %}{% block content %}<p>Hi {{ first_name }}</p>{% endblock %}',
    )
    rendered = render(ws_settings, path, first_name="Zoé & co")
    assert rendered.html.count("<html") == 1 and "Hi Zoé &amp; co" in rendered.html
    assert "Hi Zoé & co" in rendered.text and UNSUB in rendered.text
    assert f'href="{UNSUB}"' in rendered.html and "style=" in rendered.html


def test_workspace_layout_overrides_the_starter_and_default_prefix_reaches_it(
    ws_settings: Settings,
) -> None:
    (ws_settings.emails_dir / "base.html").write_text(
        '{% extends "default/base.html" %}'
        "{% block header %}<tr><td>MY BRAND</td></tr>{% endblock %}"
    )
    path = write_email(ws_settings, "seq/01-a.md", "Hello\n")
    html = render(ws_settings, path).html
    assert "MY BRAND" in html and f'href="{UNSUB}"' in html


@pytest.mark.parametrize(
    "name",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '"><script>alert(1)</script>',
        "[click me](https://evil.example)",
        "![x](https://evil.example/p.png)",
        "<https://evil.example>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "**bold** _it_ `code`",
        "\\<script>alert(1)\\</script>",
    ],
)
def test_subscriber_data_cannot_inject_html_or_markdown(ws_settings: Settings, name: str) -> None:
    path = write_email(
        ws_settings,
        "seq/01-a.md",
        "Bonjour {{ first_name }},\n\n{{ first_name }}\n\n[Go]({{ checkout_url }})\n",
    )
    rendered = render(ws_settings, path, first_name=name)
    html = rendered.html.lower()
    assert "<script" not in html
    assert "<img" not in html
    assert "evil.example" not in re.sub(r">[^<]*<", "><", html)  # never inside a tag
    assert "<strong" not in html and "<em" not in html and "<code" not in html
    assert name in rendered.text  # the plain part shows the name as typed


_FUZZ: dict[Path, tuple[Any, EmailSource]] = {}
NAME_PIECES = st.one_of(
    st.sampled_from(list("<>&\"'[]()*_`!|\\#~-+=:/. ")),
    st.sampled_from(["javascript:", "https://evil.example", "<script>", "&lt;", "&#60;", "{{"]),
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
)


@settings(
    max_examples=int(300 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.lists(NAME_PIECES, max_size=30).map("".join))
def test_fuzzed_names_never_become_markup(ws_settings: Settings, name: str) -> None:
    path = ws_settings.emails_dir / "seq" / "01-fuzz.md"
    if not path.exists():
        body = "Bonjour {{ first_name }},\n\n[Go]({{ checkout_url }})\n"
        write_email(ws_settings, "seq/01-fuzz.md", body)
        _FUZZ[path] = (make_environment(ws_settings), parse_email_file(path))
    env, source = _FUZZ[path]
    context = {**sample_context("en"), "first_name": name}
    rendered = render_email(env, source, context, settings=ws_settings, unsubscribe_url=UNSUB)
    html = rendered.html.lower()
    assert html.count("<a ") == 2  # the button and the unsubscribe link, nothing else
    for tag in ("<script", "<img", "<em", "<strong", "<code", "<h1", "<li"):
        assert tag not in html
    assert " ".join(name.split()) in " ".join(rendered.text.split())


def test_line_breaks_from_data_are_folded_into_one_subject_line(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", "Hi\n")
    rendered = render(ws_settings, path, first_name="Eve\r\nBcc: victim@example.com\u2028X")
    assert rendered.subject == "Hello Eve Bcc: victim@example.com X"


def test_control_characters_from_data_in_subject_are_refused(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", "Hi\n")
    with pytest.raises(InputError, match=r'^Email "seq/01-a.md" subject contains a line break'):
        render(ws_settings, path, first_name="Eve\x00")


def test_undefined_variable_is_an_error_naming_file_and_line(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "launch-fr/04-cart-open.md", "Bonjour\n\n{{ foo }}\n")
    with pytest.raises(InputError) as info:
        render(ws_settings, path)
    assert (
        str(info.value) == 'Email "launch-fr/04-cart-open.md": undefined variable "foo" (line 6).'
    )


def test_undefined_variable_in_subject_and_attribute(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", "Hi\n", subject='"Hi {{ nope }}"')
    with pytest.raises(InputError) as info:
        render(ws_settings, path)
    assert str(info.value) == 'Email "seq/01-a.md": undefined variable "nope" (in the subject).'
    path = write_email(ws_settings, "seq/02-b.md", "{{ plans.missing }}\n")
    with pytest.raises(InputError, match=r"has no attribute 'missing' \(line 4\)"):
        render(ws_settings, path)


def test_undefined_default_filter_still_works(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", 'Hi {{ first_name | default("there", true) }}\n')
    assert render(ws_settings, path, first_name="").text.startswith("Hi there\n")


def test_template_syntax_error_names_file_and_line(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", "Hi\n\n{% if first_name %}\nno end\n")
    with pytest.raises(
        InputError, match=r'^Email "seq/01-a.md": template syntax error: .* \(line \d+\)\.$'
    ):
        render(ws_settings, path)


def test_markdown_to_html_buttons_only_for_lone_links() -> None:
    html = markdown_to_html("[Alone](https://a.example)\n\nText [inline](https://b.example) more\n")
    assert '<a href="https://a.example" class="button">Alone</a>' in html
    assert '<a href="https://b.example">inline</a>' in html
    table = markdown_to_html("| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<table>" in table and "<td>1</td>" in table


def test_markdown_plain_text_keeps_structure_and_links() -> None:
    text = markdown_parts(
        "# Title\n\nSee you soon,\nÉlodie\n\n> quoted\n> twice\n\n1. a\n2. b\n   - nested\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n[Join](https://x.example/j) or "
        "[mail me](mailto:me@x.example) or [https://x.example](https://x.example)\n"
    )[1]
    assert text == (
        "Title\n\nSee you soon,\nÉlodie\n\n> quoted\n> twice\n\n1. a\n2. b\n  - nested\n\n"
        "a | b\n1 | 2\n\nJoin (https://x.example/j) or mail me (me@x.example) or "
        "https://x.example\n"
    )


def test_html_to_text_layout() -> None:
    html = (
        "<h2>Title</h2><p>One <a href='https://x.example/a'>link</a> and "
        "<a href='https://x.example/b'>https://x.example/b</a>.</p>"
        "<ol><li>first</li><li>second</li></ol><blockquote><p>quoted</p></blockquote>"
        "<p>line<br>break</p><style>p{}</style><img src='https://x.example/i.png' alt='Logo'>"
    )
    assert html_to_text(html) == (
        "Title\n\nOne link (https://x.example/a) and https://x.example/b.\n\n"
        "1. first\n2. second\n\n> quoted\n\nline\nbreak\n\n[Logo]\n"
    )


# --- the sandbox under attack --------------------------------------------------------------

SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ first_name.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ ''.__class__.__mro__[1]|attr('__subclasses__')() }}",
    "{{ '{0.__class__}'|attr('format')('') }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '{x.__class__}'.format_map({'x': ''}) }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
    "{{ get_flashed_messages.__globals__ }}",
    "{{ plans.append('x') }}",
    "{{ plans.pop() }}",
    "{% include '../../../../etc/passwd' %}",
    "{% include '/etc/passwd' %}",
    "{% extends '../.launchkit_secret' %}",
    "{% import 'os' as os %}{{ os }}",
    "{{ range(10**9)|list }}",
    "{% for i in range(99999999) %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ [0] * 10**9 }}",
    "{{ 9**9**9 }}",
    "{{ 9**(9**9) }}",
    "{{ 2**(2**40) }}",
    "{{ 10**1000000 }}",
    "{{ '%999999999d'|format(1) }}",
    "{{ '%.999999999f' % 1.0 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:{w}}'.format(1, w=999999999) }}",
    "{{ 'a'.center(999999999) }}",
    "{{ 'a'.ljust(999999999) }}",
    "{{ 'a'|center(999999999) }}",
    "{{ 'ab'|indent(999999999) }}",
    "{{ 'abc'|tojson(indent=999999999) }}",
    "{{ ('x' * 100000).replace('x', 'y' * 100000) }}",
    "{{ ('x' * 100000)|replace('x', 'y' * 100000) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}",
    "{% for i in range(10000) %}{{ 'x' * 100000 }}{% endfor %}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ ('y' * 100000).join(['x'] * 100000) }}",
]
LEAK_MARKERS = ("<class", "<module", "<function", "built-in", "uid=", "root:", "popen", "environ")


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_template_injection_is_blocked_quickly(ws_settings: Settings, payload: str) -> None:
    path = write_email(ws_settings, "seq/01-evil.md", f"Hi\n\n{payload}\n")
    start = time.perf_counter()
    try:
        rendered = render(ws_settings, path)
    except InputError as e:
        assert str(e).startswith('Email "seq/01-evil.md": ')
        outcome = "blocked"
    else:
        body = (rendered.html + rendered.text).lower()
        assert not any(marker in body for marker in LEAK_MARKERS), payload
        outcome = "harmless"
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{payload} took {elapsed:.2f} s ({outcome})"


def test_injection_payloads_are_counted() -> None:
    assert len(SSTI_PAYLOADS) >= 30


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'x' * 10**9 }}",
        "{{ range(10**9) }}",
    ],
)
def test_injection_in_subject_is_blocked(ws_settings: Settings, payload: str) -> None:
    path = write_email(ws_settings, "seq/01-evil.md", "Hi\n", subject=f'"{payload}"')
    with pytest.raises(InputError, match=r"\(in the subject\)\.$"):
        render(ws_settings, path)


def test_data_is_never_compiled_as_a_template(ws_settings: Settings) -> None:
    path = write_email(ws_settings, "seq/01-a.md", "Hi {{ first_name }}\n")
    rendered = render(ws_settings, path, first_name="{{ 7*7 }}{% print 1 %}")
    assert "{{ 7*7 }}{% print 1 %}" in rendered.text and "49" not in rendered.text


def test_reasonable_loops_and_ranges_still_work(ws_settings: Settings) -> None:
    path = write_email(
        ws_settings,
        "seq/01-a.md",
        "{% for p in plans %}- {{ p }}\n{% endfor %}\n{{ range(10000)|sum }} {{ '-' * 40 }} "
        "{{ '%05.1f'|format(3.14159) }} {{ '{:,}'.format(1234567) }} {{ 2**64 }}\n",
    )
    text = render(ws_settings, path, plans=["A", "B"]).text
    assert "- A\n- B" in text
    assert "49995000 " + "-" * 40 + " 003.1 1,234,567 18446744073709551616" in text


# --- lint ----------------------------------------------------------------------------------


def _source(tmp_path: Path) -> EmailSource:
    return EmailSource(tmp_path / "s" / "01.md", "01", "x", "", "", True, {})


def _rendered(html: str = "", subject: str = "Hi", text: str = f"x {UNSUB}") -> RenderedEmail:
    html = html or f'<p>Hi</p><a href="{UNSUB}">Unsubscribe</a>'
    return RenderedEmail(subject, "", html, text, UNSUB)


def test_lint_passes_a_clean_email(tmp_path: Path) -> None:
    assert lint_email(_rendered(), _source(tmp_path)) == []


U = f'<a href="{UNSUB}">u</a>'
NOT_ABSOLUTE = "is not absolute (use https://...)"
PNG = "https://x.example/a.png"


@pytest.mark.parametrize(
    ("rendered", "problem"),
    [
        (_rendered(subject=""), "the subject is empty"),
        (_rendered(subject="x" * 80), "the subject is 80 characters; keep it under 80"),
        (_rendered(html=U + "x" * 110_000), "the email is 107 KB; Gmail clips emails over 102 KB"),
        (_rendered(html=f'<a href="/relative">r</a>{U}'), f'the link "/relative" {NOT_ABSOLUTE}'),
        (_rendered(html=f'<a href="">r</a>{U}'), f'the link "" {NOT_ABSOLUTE}'),
        (
            _rendered(html=f'<a href="javascript:x()">r</a>{U}'),
            f'the link "javascript:x()" {NOT_ABSOLUTE}',
        ),
        (_rendered(html="<p>no footer</p>"), "the HTML part has no unsubscribe link"),
        (_rendered(text="no link"), "the plain-text part has no unsubscribe link"),
        (_rendered(html=f'<img src="{PNG}">{U}'), f'the image "{PNG}" has no alt text'),
        (_rendered(html=f'<img src="{PNG}" alt=" ">{U}'), f'the image "{PNG}" has no alt text'),
        (
            _rendered(html=f'<img src="a.png" alt="A">{U}'),
            'the image "a.png" is not an absolute https:// URL',
        ),
    ],
)
def test_lint_catches_each_problem(tmp_path: Path, rendered: RenderedEmail, problem: str) -> None:
    assert problem in lint_email(rendered, _source(tmp_path))


def test_lint_checks_the_postal_address(tmp_path: Path) -> None:
    problems = lint_email(_rendered(), _source(tmp_path), postal_address="")
    assert "no postal address is set (sender.postal_address in launchkit.toml)" in problems
    problems = lint_email(_rendered(), _source(tmp_path), postal_address="1 Main St")
    assert "the postal address is missing from the email" in problems


def test_lint_long_preheader(tmp_path: Path) -> None:
    rendered = RenderedEmail("Hi", "p" * 111, f'<a href="{UNSUB}">u</a>', UNSUB, UNSUB)
    assert lint_email(rendered, _source(tmp_path)) == [
        "the preheader is 111 characters; keep it under 110"
    ]


# --- the starter kit -----------------------------------------------------------------------

STARTER = starter_dir("emails")
STARTER_FILES = sorted(
    p.relative_to(STARTER).as_posix()
    for folder in (
        "launch-fr",
        "launch-fr-tu",
        "launch-en",
        "evergreen-fr",
        "evergreen-fr-tu",
        "evergreen-en",
        "transactional-fr",
        "transactional-fr-tu",
        "transactional-en",
    )  # fmt: skip
    for p in (STARTER / folder).glob("*.md")
)


def test_starter_kit_is_complete() -> None:
    assert len([f for f in STARTER_FILES if f.startswith("launch-fr/")]) >= 10
    assert len([f for f in STARTER_FILES if f.startswith("launch-fr-tu/")]) >= 10
    assert len([f for f in STARTER_FILES if f.startswith("launch-en/")]) >= 10
    for folder in ("evergreen-fr", "evergreen-fr-tu", "evergreen-en"):  # the deadline funnel
        assert len([f for f in STARTER_FILES if f.startswith(f"{folder}/")]) == 4
    for lang in ("fr", "fr-tu", "en"):
        for name in ("confirm-optin", "magnet-delivery", "receipt", "dunning"):
            assert f"transactional-{lang}/{name}.md" in STARTER_FILES


@pytest.mark.parametrize("name", STARTER_FILES)
def test_starter_emails_render_and_lint_clean(ws_settings: Settings, name: str) -> None:
    language = folder_language(name.split("/")[0])
    assert language is not None
    env = make_environment(ws_settings)
    source = parse_email_file(STARTER / name)
    context = sample_context(language)
    rendered = render_email(
        env, source, context, settings=ws_settings, unsubscribe_url=UNSUB, language=language
    )
    assert lint_email(rendered, source, postal_address=ws_settings.postal_address) == []
    assert context["product"] in rendered.html + rendered.subject + rendered.text
    assert "{{" not in rendered.html and "{%" not in rendered.text
    assert f'lang="{language}"' in rendered.html
    for url in re.findall(r'href="([^"]+)"', rendered.html):
        assert url.startswith(("https://", "mailto:")), url


_DANGLING = re.compile(r"[\s\u00a0\u202f][.,]|\S {2,}\S")  # "Le prix. ." "Prix : ." "Or  in"


@pytest.mark.parametrize(
    "name", [f for f in STARTER_FILES if f.startswith(("launch-", "evergreen-"))]
)
def test_starter_emails_read_well_before_any_offer_exists(ws_settings: Settings, name: str) -> None:
    """No price yet (no offer): the price sentences are left out, none is left half-written."""
    language = folder_language(name.split("/")[0])
    assert language is not None
    context = sample_context(language) | {"price": "", "plans": []}
    context["offer"] = context["offer"] | {"price": "", "price_now": ""}
    rendered = render_email(
        make_environment(ws_settings), parse_email_file(STARTER / name), context,
        settings=ws_settings, unsubscribe_url=UNSUB, language=language,
    )  # fmt: skip
    dangling = [line for line in rendered.text.splitlines() if _DANGLING.search(line)]
    assert dangling == []


# --- the inline-run cache gives the bytes of a plain markdown-it parse ----------------------

_PLAIN_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")


def _plain_markdown_parts(text: str) -> tuple[str, str]:
    """markdown_parts without any cache: one straightforward markdown-it parse and render."""
    tokens = _PLAIN_MARKDOWN.parse(text)
    for index, token in enumerate(tokens):
        if token.type == "inline" and index and tokens[index - 1].type == "paragraph_open":
            markdown_text._mark_button(token)
    html = _PLAIN_MARKDOWN.renderer.render(tokens, _PLAIN_MARKDOWN.options, {})
    return html, markdown_text._tokens_to_text(tokens)


_BODIES = (
    "Bonjour {n},\n\n[Acheter]({u})\n\nLa même phrase pour *tout le monde*.\n",
    "# {n}\n\n[{n}]({u})\n\n| {n} | [x]({u}) |\n|:--|--:|\n| [x]({u}) | 1 |\n",
    "- {n}\n- [{n}]({u})\n\n> [x]({u})\n> {n}\n",
    "{raw}\n\n{raw}\n\n> {raw}\n",
    '[x]\n\n{n} [x] [{n}]\n\n[x]: {u} "T"\n',
    "Hi {n}  \nthere <b>{n}</b> ![{n}](https://i.example/p.png)\n\n<div>\n{n}\n</div>\n",
    # parts whose text ends with ". " or "- " (the next paragraph follows without a blank
    # line), empty parts, rules between parts
    "{n}.&#32;\n\n[x]({u})\n\n\n\n# {n} -&#32;\n\n---\n\n{n}\n\n\n",
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_BODIES),
    st.text(max_size=16),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
)
def test_markdown_parts_equal_a_plain_parse_byte_for_byte(body: str, name: str, raw: str) -> None:
    # every body is converted twice (the second time its inline runs come from the cache), and
    # a personal value with any character, escaped as templates escape it, or raw
    link = "https://example.com/buy?t=" + name.translate(_MD_SPECIALS)
    text = body.format(n=name.translate(_MD_SPECIALS), u=link, raw=raw)
    for _ in range(2):
        markdown_parts.cache_clear()
        assert markdown_parts(text) == _plain_markdown_parts(text)


_BLOCK_LINES = st.sampled_from(
    ["Bonjour {n},", "{n}", "# {n}", "Titre", "===", "---", "***", "- {n}", "1. {n}", "2) x",
     "> {n}", "    code {n}", "\tcode", "```", "~~~ py", "<div>", "</div>", "<!--", "-->",
     "<b>{n}</b>", "[x]: https://e.example/x", '[x]: https://e.example/x "T', 'itre"', "[x]",
     "[{n}]({u})", "| a | b |", "|---|---|", "| {n} | [x]({u}) |", "  indented", "\r", "",
     " ", "\\", "*{n}", "{n}*", "`{n}", "{n}`", "<https://e.example/{n}>", "[a\n", "]",
     "{n}.&#32;", "- x -&#32;"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_BLOCK_LINES, st.sampled_from(["\n", "\n\n", "\n\n\n"])), max_size=14),
    st.sampled_from(["Camille", "", 'Zoé <b>"&\\*_[x](y)', "\u202fNoël\u00a0!", "- x", "# x"]),
    st.text(max_size=8),
)
def test_body_parsed_by_parts_equals_a_plain_parse(
    lines: list[tuple[str, str]], name: str, raw: str
) -> None:
    """The parts between blank lines parsed one by one (and kept) give the bytes of one plain
    parse of the whole body, for bodies that mix paragraphs, headings, lists, quotes, code,
    fences, tables, HTML blocks, link definitions and blank-line runs, personal values
    escaped as templates escape them or raw."""
    escaped = name.translate(_MD_SPECIALS)
    link = "https://example.com/buy?t=" + escaped
    text = "".join(
        line.format(n=value, u=link) + end
        for (line, end), value in zip(lines, [escaped, name, raw] * 5, strict=False)
    )
    for _ in range(2):  # the second time, every part comes from the memo
        markdown_parts.cache_clear()
        assert markdown_parts(text) == _plain_markdown_parts(text), text


MEMBERSHIP_VALUES = {  # what launchkit.memberships.notify passes to its emails
    "amount": "29 €", "interval": "month", "period_end": "2026-12-31", "trial_end": "2026-12-10",
    "account_url": "https://e.example/account", "account_link": "https://e.example/account/t",
    "update_card_url": "https://invoice.example/i/1",
}  # fmt: skip


def test_starter_kit_markdown_equals_a_plain_parse(
    ws_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[str] = []

    def keep(text: str) -> tuple[str, str]:
        bodies.append(text)
        return markdown_parts(text)

    monkeypatch.setattr(render_package, "markdown_parts", keep)
    env = make_environment(ws_settings)
    for path in sorted(starter_dir("emails").glob("*/*.md")):
        source = parse_email_file(path)
        for first_name in ("Camille", 'Zoé <b>"&\\*_[x](y)', "\u202fNoël\u00a0!"):
            context = {**sample_context(path.parent.name[-2:]), "first_name": first_name}
            if path.parent.name.startswith("membership-"):
                context.update(MEMBERSHIP_VALUES)
            render_email(
                env, source, context, settings=ws_settings, unsubscribe_url="https://e.example/u/1"
            )
    assert len(bodies) > 20
    for body in bodies * 2:  # the second time, the inline runs come from the cache
        markdown_parts.cache_clear()
        assert markdown_parts(body) == _plain_markdown_parts(body)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_starter_preheader_padding_inlines_like_the_entity_loop(
    tmp_path: Path, language: str
) -> None:
    """The layout writes its preheader padding as characters; once inlined, the email is byte
    for byte the one the former ``{% for %}`` loop of ``&#847;&zwnj;&nbsp;`` gave."""
    starter = (starter_dir("emails") / "base.html").read_text(encoding="utf-8")
    padding = "\u034f\u200c\u00a0" * 40
    assert starter.count(padding) == 1
    loop = "{% for _ in range(40) %}&#847;&zwnj;&nbsp;{% endfor %}"
    source = parse_email_file(starter_dir("emails") / f"launch-{language}" / "04-cart-open.md")
    pages = []
    for layout in (starter, starter.replace(padding, loop)):
        workspace = tmp_path / str(len(pages))
        workspace.mkdir()
        settings = email_settings(workspace)
        (settings.emails_dir / "base.html").write_text(layout, encoding="utf-8")
        rendered = render_email(
            make_environment(settings),
            source,
            sample_context(language),
            settings=settings,
            unsubscribe_url=UNSUB,
            language=language,
        )
        pages.append(rendered.html)
    assert pages[0] == pages[1]
    assert "\u034f\u200c&nbsp;" * 40 + "</span>" in pages[0]


def test_sandbox_context_is_the_one_jinja_builds(ws_settings: Settings) -> None:
    """The sandbox's templates build their context from a plain-dict merge of the globals:
    the same variables, in the same order, the same ``globals_keys`` as Jinja's own."""
    from jinja2.runtime import new_context

    env = make_environment(ws_settings)
    env.globals["shadowed"] = "environment"
    template = env.from_string(
        "{{ shadowed }} {{ own }} {{ first_name }} {{ range(2) | list }}",
        globals={"shadowed": "template", "own": 1},
    )
    values = {"first_name": "Zoé", "own": 2}
    for vars in (values, {}, None):
        ours = template.new_context(vars)
        jinjas = new_context(env, template.name, template.blocks, vars, False, template.globals)
        assert list(ours.parent.items()) == list(jinjas.parent.items())
        assert ours.globals_keys == jinjas.globals_keys == {*env.globals, "own"}
        assert ours.vars == jinjas.vars == {} and ours.blocks == jinjas.blocks
        assert ours.name == jinjas.name
    shared = template.new_context(values, shared=True)
    assert shared.parent is values and shared.globals_keys == {*env.globals, "own"}
    assert template.render(values) == "template 2 Zoé [0, 1]"
    with pytest.raises(TypeError):  # as in Jinja: variable names are strings
        template.new_context({1: "x"})


_TIDY_PIECES = st.sampled_from(["\n", "\r", "\r\n", " ", "\t", "a", "-- ", "\u00a0"])


@given(st.lists(_TIDY_PIECES, max_size=40).map("".join))
@settings(max_examples=500, deadline=None)
def test_blank_line_runs_are_found_as_with_the_counted_pattern(text: str) -> None:
    """``\\n\\n\\n+`` (literal start, fast scan) finds exactly the runs ``\\n{3,}`` finds, and
    the tidied plain text is the one the counted pattern gives."""
    from launchkit.render import _tidy_text
    from launchkit.render.text import BLANK_LINES

    counted = re.compile(r"\n{3,}")
    assert [m.span() for m in BLANK_LINES.finditer(text)] == [
        m.span() for m in counted.finditer(text)
    ]
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() if line != "-- " else line for line in unified.split("\n")]
    assert _tidy_text(text) == counted.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"
