"""Email rendering: front matter, the Jinja2 sandbox, Markdown, CSS inlining, plain text.

``parse_email_file`` reads an email file; ``make_environment`` builds the sandboxed Jinja2
environment (``render/sandbox.py``: limits for user-edited templates); ``render_email`` turns a
source and plain-data context into subject, preheader, inlined HTML and plain text
(``render/text.py``: Markdown and plain-text conversion); ``lint_email`` lists problems.
Subscriber data is always escaped: HTML-escaped in ``.html`` templates, and in Markdown also
neutralised for Markdown syntax, so a first name can never inject a tag or a link.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import yaml
from markupsafe import Markup

from launchkit.config import LANGUAGES, Settings
from launchkit.errors import InputError
from launchkit.render.french import elide, folder_language, typography_html, typography_text
from launchkit.render.sandbox import (
    MAX_ITERATIONS,
    MAX_OUTPUT,
    MAX_RANGE,
    MAX_VALUE,
    LaunchkitSandbox,
    SecurityError,
)
from launchkit.render.text import BLANK_LINES, html_to_text, markdown_parts, markdown_to_html
from launchkit.resources import starter_dir

SUBJECT_MAX = 80
PREHEADER_MAX = 110
GMAIL_CLIP_BYTES = 102 * 1024

_FORBIDDEN_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_MARKDOWN_SUFFIXES = (".md", ".markdown")
_AUTOESCAPE_SUFFIXES = (".html", ".htm", ".md", ".markdown")
_MD_SPECIALS = str.maketrans(
    {c: f"&#{ord(c)};" for c in "\\`*_[]!|~"}
    | {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
    | {'"': "&#34;", "'": "&#39;"}
)


__all__ = [
    "EMAIL_VARIABLES",
    "MAX_ITERATIONS",
    "MAX_OUTPUT",
    "MAX_RANGE",
    "MAX_VALUE",
    "EmailSource",
    "LaunchkitSandbox",
    "RenderedEmail",
    "SecurityError",
    "check_header_value",
    "html_to_text",
    "lint_email",
    "make_environment",
    "shared_environment",
    "markdown_parts",
    "markdown_to_html",
    "parse_email_file",
    "render_email",
    "render_subject",
    "sample_context",
]


@dataclass(frozen=True)
class EmailSource:
    """One parsed email file: front matter plus the Jinja/Markdown body."""

    path: Path
    step: str
    subject: str
    preheader: str
    body: str
    is_markdown: bool
    meta: dict[str, Any]
    body_line: int = 1  # line of the file where the body starts (for error messages)

    @property
    def display_name(self) -> str:
        """``launch-fr/04-cart-open.md``: how messages name this email."""
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered email, ready for ``mailer.build_message``."""

    subject: str
    preheader: str
    html: str
    text: str
    unsubscribe_url: str = ""


# --- parsing ------------------------------------------------------------------------------


_PARSED: dict[Path, tuple[tuple[int, int], EmailSource]] = {}


def parse_email_file(path: Path) -> EmailSource:
    """Read an email file: YAML front matter between ``---`` lines, then the body.

    Parsed files are kept per (path, modification time, size), so a sender that re-reads its
    sequence folders on every run only parses a file again after it was edited.
    """
    path = Path(path)
    try:
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
    except OSError:
        stamp = None
    cached = _PARSED.get(path)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    source = _parse_email_file(path)
    if stamp is not None:
        _PARSED[path] = (stamp, source)
    return source


def _parse_email_file(path: Path) -> EmailSource:
    name = f"{path.parent.name}/{path.name}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f'Email "{name}" cannot be read: {e}.') from e
    front, body, body_line = _split_front_matter(text, name)
    meta = _load_front_matter(front, name)
    subject = meta.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise InputError(f'Email "{name}" line 1: the front matter has no "subject".')
    preheader = meta.get("preheader") or ""
    if not isinstance(preheader, str):
        raise InputError(f'Email "{name}": "preheader" must be text.')
    return EmailSource(
        path=path,
        step=path.stem,
        subject=subject.strip(),
        preheader=preheader.strip(),
        body=body,
        is_markdown=path.suffix.lower() in _MARKDOWN_SUFFIXES,
        meta=meta,
        body_line=body_line,
    )


def _split_front_matter(text: str, name: str) -> tuple[str, str, int]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise InputError(f'Email "{name}" line 1: expected front matter starting with "---".')
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), index + 2
    raise InputError(f'Email "{name}": the front matter is not closed by a "---" line.')


def _load_front_matter(front: str, name: str) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 2}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f'Email "{name}"{line}: invalid front matter ({problem}).') from e
    if not isinstance(meta, dict):
        raise InputError(f'Email "{name}" line 2: the front matter must be "key: value" lines.')
    return {str(k): v for k, v in meta.items()}


def check_header_value(value: str, what: str) -> str:
    """Return ``value`` unchanged, or raise if it could break out of an email header."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}.")
    bad = _FORBIDDEN_HEADER_CHARS.search(value)
    if bad:
        code = f"U+{ord(bad.group()):04X}"
        raise InputError(
            f"{what} contains a line break or control character ({code}); "
            "it cannot go in an email header."
        )
    return value


# --- environment --------------------------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    return name is not None and name.lower().endswith(_AUTOESCAPE_SUFFIXES)


@jinja2.pass_eval_context
def _finalize(eval_ctx: Any, value: Any) -> Any:
    """Escape data for HTML and neutralise Markdown syntax in autoescaped templates."""
    if not eval_ctx.autoescape or hasattr(value, "__html__") or not isinstance(value, str):
        return value
    return Markup(value.translate(_MD_SPECIALS))  # noqa: S704 (escaped by translate)


def make_environment(settings: Settings) -> LaunchkitSandbox:
    """A sandboxed Jinja2 environment: workspace ``emails/`` first, then the starter kit."""
    starter = str(starter_dir("emails"))
    search = list(dict.fromkeys([str(settings.emails_dir), starter]))
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(search),
            jinja2.PrefixLoader({"default": jinja2.FileSystemLoader(starter)}),
        ]
    )
    env = LaunchkitSandbox(
        loader=loader,
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    add_french_filters(env)
    env.lk_cache = {}  # type: ignore[attr-defined]
    return env


def add_french_filters(env: jinja2.Environment) -> None:
    """``{{ "de" | elide(product) }}`` -> ``d'Atelier``; also ``{{ product | de }}``, ``le``,
    ``la`` and ``que``."""
    env.filters["elide"] = elide
    for word in ("de", "le", "la", "que"):
        env.filters[word] = lambda value, _word=word: elide(_word, value)


_SHARED: OrderedDict[tuple[str, ...], tuple[Any, LaunchkitSandbox]] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 8


def shared_environment(settings: Settings) -> LaunchkitSandbox:
    """``make_environment``, reused within the process while no template file changed.

    Its compiled templates stay warm from one send run to the next; editing, adding or
    removing any file under the email folders gives a fresh environment.
    """
    starter = str(starter_dir("emails"))
    roots = tuple(dict.fromkeys([str(settings.emails_dir), starter]))
    stamp = _tree_stamp(roots)
    with _SHARED_LOCK:
        entry = _SHARED.get(roots)
        if entry is None or entry[0] != stamp:
            entry = (stamp, make_environment(settings))
            _SHARED[roots] = entry
            while len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
        _SHARED.move_to_end(roots)
        return entry[1]


def _tree_stamp(roots: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every file under ``roots``: changes when any template does."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                found.append((path, info.st_mtime_ns, info.st_size))
    return tuple(found)


def _compiled(
    env: jinja2.Environment, text: str, name: str | None, filename: str, source: EmailSource
) -> jinja2.Template:
    cache: dict[tuple[Any, ...], jinja2.Template] = env.lk_cache  # type: ignore[attr-defined]
    key = (name, filename, text)
    template = cache.get(key)
    if template is None:
        try:
            code = env.compile(text, name, filename)
        except jinja2.TemplateSyntaxError as e:
            raise _template_error(e, source) from e
        template = env.template_class.from_code(env, code, env.make_globals(None))
        cache[key] = template
    return template


def _run(template: jinja2.Template, context: Mapping[str, Any], source: EmailSource) -> str:
    try:
        return template.render(context)
    except InputError:
        raise
    except (jinja2.TemplateError, SecurityError, ArithmeticError, TypeError, ValueError) as e:
        raise _template_error(e, source) from e
    except (RecursionError, MemoryError, LookupError, AttributeError) as e:
        raise _template_error(e, source) from e


def _template_error(error: BaseException, source: EmailSource) -> InputError:
    """``Email "launch-fr/04-cart-open.md": undefined variable "foo" (line 12).``"""
    if isinstance(error, jinja2.UndefinedError):
        match = re.fullmatch(r"'([^']*)' is undefined", error.message or "")
        problem = f'undefined variable "{match[1]}"' if match else str(error.message)
    elif isinstance(error, SecurityError):
        problem = f"blocked by the template sandbox: {error}"
    elif isinstance(error, jinja2.TemplateNotFound):
        problem = f'template "{error.name}" not found'
    elif isinstance(error, jinja2.TemplateSyntaxError):
        problem = f"template syntax error: {error.message}"
    elif isinstance(error, RecursionError):
        problem = "the template recurses too deeply"
    else:
        problem = f"{type(error).__name__}: {error}"
    where = _error_location(error, source)
    return InputError(f'Email "{source.display_name}": {problem}{where}.')


def _error_location(error: BaseException, source: EmailSource) -> str:
    filename, line = None, None
    if isinstance(error, jinja2.TemplateSyntaxError):
        filename, line = error.filename, error.lineno
    tb = error.__traceback__
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            filename, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    if filename is None or line is None:
        return ""
    if filename == str(source.path):
        return f" (line {line + source.body_line - 1})"
    if filename.startswith(str(source.path) + "#"):
        return f" (in the {filename.rpartition('#')[2]})"
    return f" (in {Path(filename).name} line {line})"


# --- rendering ----------------------------------------------------------------------------


def render_email(
    env: jinja2.Environment,
    source: EmailSource,
    context: Mapping[str, Any],
    *,
    settings: Settings,
    unsubscribe_url: str,
    language: str | None = None,
    links: Callable[[str], str | None] | None = None,
) -> RenderedEmail:
    """Render one email for one subscriber: subject, preheader, inlined HTML and plain text.

    ``links`` (the sender's click tracking, ``launchkit/clicks.py``) gives the replacement of an
    http(s) link of the HTML and text parts, or None to keep it.
    """
    rendered = _render_email(env, source, context, settings, unsubscribe_url, language)
    if links is None:
        return rendered
    from launchkit.clicks import rewrite_links

    html, text = rewrite_links(rendered.html, rendered.text, links)
    return RenderedEmail(rendered.subject, rendered.preheader, html, text, unsubscribe_url)


def _render_email(
    env: jinja2.Environment,
    source: EmailSource,
    context: Mapping[str, Any],
    settings: Settings,
    unsubscribe_url: str,
    language: str | None,
) -> RenderedEmail:
    values = dict(context)
    lang = _language(source, settings, language)
    french = lang == "fr"
    subject = _render_header(env, source, source.subject, values, "subject", french)
    preheader = _render_header(env, source, source.preheader, values, "preheader", french)
    layout = {
        "subject": subject,
        "preheader": preheader,
        "sender_name": settings.sender_name,
        "postal_address": settings.postal_address,
        "unsubscribe_url": unsubscribe_url,
        "language": lang,
    }
    values.update(layout)
    template = _compiled(env, source.body, source.display_name, str(source.path), source)
    body = _run(template, values, source)
    if not source.is_markdown and "<html" in body[:4096].lower():  # a whole page of its own
        text = _sibling_text(env, source, values) or html_to_text(body)
        if french:
            body, text = typography_html(body), typography_text(text)
        return RenderedEmail(
            subject, preheader, _inline_css(body, source), _tidy_text(text), unsubscribe_url
        )
    shell = _render_layout(env, source, "base.html", {**values, "body_html": _BODY_SLOT})
    html, body_text = _convert(source, body, shell, french)
    sibling = _sibling_text(env, source, values)
    body_text = (typography_text(sibling) if french else sibling) or body_text
    text = _render_layout(env, source, "base.txt", {**values, "body_text": body_text})
    return RenderedEmail(subject, preheader, html, _tidy_text(text), unsubscribe_url)


_BODY_SLOT = Markup("<!--lk-body-slot-->")


def _convert(source: EmailSource, body: str, shell: str, french: bool) -> tuple[str, str]:
    """The costly part: Markdown to HTML, the body put in the layout, CSS inlined, plain text
    (French spacing before ``: ; ! ?`` and inside « » for French emails)."""
    if source.is_markdown:
        body_html, body_text = markdown_parts(body)
    else:
        body_html, body_text = body, html_to_text(body)
    if french:
        body_html, body_text = typography_html(body_html), typography_text(body_text)
    return _inline_css(shell.replace(_BODY_SLOT, body_html), source), body_text


def _language(source: EmailSource, settings: Settings, language: str | None) -> str:
    if language:
        return language
    if source.meta.get("language") in LANGUAGES:
        return str(source.meta["language"])
    return folder_language(source.path.parent.name) or settings.language


def render_subject(
    env: jinja2.Environment, source: EmailSource, context: Mapping[str, Any], language: str
) -> str:
    """The rendered subject line of an email, as ``render_email`` would give it."""
    return _render_header(env, source, source.subject, context, "subject", language == "fr")


def _render_header(
    env: jinja2.Environment,
    source: EmailSource,
    text: str,
    values: Mapping[str, Any],
    what: str,
    french: bool = False,
) -> str:
    if not text:
        return ""
    template = _compiled(env, text, None, f"{source.path}#{what}", source)
    rendered = " ".join(_run(template, values, source).split())
    if french:
        rendered = typography_text(rendered)
    return check_header_value(rendered, f'Email "{source.display_name}" {what}')


def _sibling_text(env: jinja2.Environment, source: EmailSource, values: Mapping[str, Any]) -> str:
    """The rendered ``.txt`` file next to the email, or "" when there is none."""
    sibling = _text_sibling(env, source)
    if sibling is None:
        return ""
    name = f"{source.path.parent.name}/{sibling.name}"
    text = sibling.read_text(encoding="utf-8-sig")
    return _run(_compiled(env, text, name, str(sibling), source), values, source)


def _text_sibling(env: jinja2.Environment, source: EmailSource) -> Path | None:
    cache: dict[Any, Any] = env.lk_cache  # type: ignore[attr-defined]
    key = ("txt-sibling", source.path)
    if key not in cache:
        path = source.path.with_suffix(".txt")
        cache[key] = path if path.is_file() else None
    return cache[key]


def _render_layout(
    env: jinja2.Environment, source: EmailSource, name: str, values: Mapping[str, Any]
) -> str:
    try:
        template = env.get_template(name)
    except (jinja2.TemplateError, OSError) as e:
        raise _template_error(e, source) from e
    return _run(template, values, source)


_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _inline_css(html: str, source: EmailSource) -> str:
    try:
        return _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as e:
        raise InputError(f'Email "{source.display_name}": cannot inline its CSS ({e}).') from e


def _tidy_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() if line != "-- " else line for line in text.split("\n")]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"


# --- lint ---------------------------------------------------------------------------------


class _LinkFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append((dict(attrs).get("href") or "").strip())
        elif tag == "img":
            self.images.append(dict(attrs))


_ABSOLUTE = re.compile(r"^(https?://[^\s/]+|mailto:\S+@\S+)", re.IGNORECASE)
_UNSUBSCRIBE_WORDS = re.compile(r"unsubscribe|d[ée]sabonne|d[ée]sinscri|/u/", re.IGNORECASE)


def lint_email(
    rendered: RenderedEmail, source: EmailSource, *, postal_address: str | None = None
) -> list[str]:
    """Problems that would hurt delivery or break the rules; an empty list means clean."""
    problems: list[str] = []
    subject = rendered.subject.strip()
    if not subject:
        problems.append("the subject is empty")
    elif len(subject) >= SUBJECT_MAX:
        problems.append(f"the subject is {len(subject)} characters; keep it under {SUBJECT_MAX}")
    if len(rendered.preheader) > PREHEADER_MAX:
        problems.append(
            f"the preheader is {len(rendered.preheader)} characters; keep it under {PREHEADER_MAX}"
        )
    size = len(rendered.html.encode()) + len(rendered.text.encode())
    if size > GMAIL_CLIP_BYTES:
        problems.append(f"the email is {size / 1024:.0f} KB; Gmail clips emails over 102 KB")
    finder = _LinkFinder()
    finder.feed(rendered.html)
    finder.close()
    problems += _link_problems(finder, rendered)
    if postal_address is not None:
        if not postal_address.strip():
            problems.append("no postal address is set (sender.postal_address in launchkit.toml)")
        elif postal_address.split("\n")[0].strip() not in rendered.text:
            problems.append("the postal address is missing from the email")
    return problems


def _link_problems(finder: _LinkFinder, rendered: RenderedEmail) -> list[str]:
    problems = [
        f'the link "{href[:80]}" is not absolute (use https://...)'
        for href in dict.fromkeys(finder.hrefs)
        if not _ABSOLUTE.match(href)
    ]
    url = rendered.unsubscribe_url
    has_link = (
        url in finder.hrefs if url else any(_UNSUBSCRIBE_WORDS.search(h) for h in finder.hrefs)
    )
    if not has_link:
        problems.append("the HTML part has no unsubscribe link")
    if url and url not in rendered.text:
        problems.append("the plain-text part has no unsubscribe link")
    for image in finder.images:
        src = (image.get("src") or "")[:80]
        if not (image.get("alt") or "").strip():
            problems.append(f'the image "{src}" has no alt text')
        if not _ABSOLUTE.match(src):
            problems.append(f'the image "{src}" is not an absolute https:// URL')
    return problems


# --- sample data --------------------------------------------------------------------------

EMAIL_VARIABLES = (
    "first_name", "last_name", "email", "product", "creator_name", "cart_open", "cart_close",
    "price", "plans", "guarantee_days", "checkout_url", "magnet_title", "download_url",
    "confirm_url", "update_card_url", "order_summary", "amount_paid", "instalment_number",
    "instalments_total", "order_number", "plan_schedule", "guarantee_end", "receipt_url", "tax",
    "offer",
)  # fmt: skip


def sample_context(language: str = "fr", base_url: str = "https://example.com") -> dict[str, Any]:
    """Plausible values for every documented email variable, for previews and tests."""
    french = language == "fr"
    return {
        "first_name": "Camille",
        "last_name": "Dupont",
        "email": "camille@example.com",
        "product": "Atelier Aquarelle" if french else "Watercolour Workshop",
        "creator_name": "Élodie",
        "cart_open": "lundi 1 décembre à 9 h 00 (heure de Paris)"
        if french
        else "Monday, December 1 at 9:00 AM CET",
        "cart_close": "vendredi 5 décembre à 23 h 59 (heure de Paris)"
        if french
        else "Friday, December 5 at 11:59 PM CET",
        "price": "297 €" if french else "€297",
        "plans": ["3 × 99 €"] if french else ["3 × €99"],
        "guarantee_days": 30,
        "checkout_url": f"{base_url}/checkout/atelier",
        "magnet_title": "La checklist du lancement" if french else "The launch checklist",
        "download_url": f"{base_url}/d/sample-token",
        "confirm_url": f"{base_url}/c/sample-token",
        "update_card_url": f"{base_url}/billing/sample-token",
        "order_summary": "Atelier Aquarelle × 1 : 297 €"
        if french
        else "Watercolour Workshop × 1: €297",
        "amount_paid": "99 €" if french else "€99",
        "instalment_number": 2,
        "instalments_total": 3,
        "members_url": f"{base_url}/members/sample-token",
        "products": ["Atelier Aquarelle", "Le carnet d'exercices" if french else "The workbook"],
        "order_number": "1042",
        "plan_schedule": [
            "1/3 · 99,00 € · payée le lundi 1 décembre 2025",
            "2/3 · 99,00 € · prévue le jeudi 1 janvier 2026",
            "3/3 · 99,00 € · prévue le dimanche 1 février 2026",
        ]
        if french
        else [
            "1/3 · €99.00 · paid on Monday, December 1, 2025",
            "2/3 · €99.00 · due on Thursday, January 1, 2026",
            "3/3 · €99.00 · due on Sunday, February 1, 2026",
        ],
        "guarantee_end": "mercredi 31 décembre à 9 h 00 (heure de Paris)"
        if french
        else "Wednesday, December 31 at 9:00 AM CET",
        "receipt_url": f"{base_url.replace('example.com', 'invoice.stripe.com')}/i/sample",
        "tax": "16,50 €" if french else "€16.50",
        "offer": {
            "price": "297 €" if french else "€297",
            "price_now": "247 €" if french else "€247",
            "tier": "early",
            "next_price_at": "mardi 2 décembre à 23 h 59 (heure de Paris)"
            if french
            else "Tuesday, December 2 at 11:59 PM CET",
        },
    }
