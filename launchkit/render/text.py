"""Markdown to HTML (CommonMark + tables, lone links as buttons) and HTML/Markdown to plain text."""

from __future__ import annotations

import functools
import re
import threading
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core.text_join import text_join
from markdown_it.token import Token


class _Inlines:
    """Parsed inline runs (a paragraph's, a heading's, a cell's text), kept by their source.

    Exact by construction: markdown-it parses an inline run from its text alone, plus the
    document's link reference definitions (a document that has any is parsed without this
    cache) and options that never change. Most runs of a launch email are the same for every
    subscriber; only the runs holding a personal value or a personal link are parsed again.
    The cached children are never changed after they are stored (the button class is set
    before), and their HTML and plain text are kept next to them, looked up by identity.
    """

    MAX = 4096

    def __init__(self) -> None:
        self.by_source: dict[tuple[str, bool], list[Token]] = {}
        self.by_id: dict[int, tuple[list[Token], dict[str, str]]] = {}
        self.lock = threading.Lock()

    def children(self, state: Any, token: Token, paragraph: bool) -> list[Token]:
        key = (token.content, paragraph)
        found = self.by_source.get(key)
        if found is not None:
            return found
        children = _parse_inline(state, token, paragraph)
        with self.lock:
            if len(self.by_source) >= self.MAX:
                self.by_source.clear()
                self.by_id.clear()
            self.by_source[key] = children
            self.by_id[id(children)] = (children, {})
        return children

    def memo(self, children: list[Token]) -> dict[str, str] | None:
        """The HTML/text memo of a cached run, or None for a run that is not cached."""
        entry = self.by_id.get(id(children))
        return entry[1] if entry is not None and entry[0] is children else None


_INLINES = _Inlines()


def _parse_inline(state: Any, token: Token, paragraph: bool) -> list[Token]:
    """What the core "inline" and "text_join" rules make of one inline token, button marked."""
    single = Token("inline", "", 0, content=token.content, children=[])
    state.md.inline.parse(single.content, state.md, state.env, single.children)
    text_join(SimpleNamespace(tokens=[single]))
    if paragraph:
        _mark_button(single)
    return single.children or []


def _inline_rule(state: Any) -> None:
    """The core "inline" rule (then "text_join" and the button marking), through the cache."""
    cached = not state.env.get("references")
    for index, token in enumerate(state.tokens):
        if token.type != "inline":
            continue
        paragraph = bool(index) and state.tokens[index - 1].type == "paragraph_open"
        if cached:
            token.children = _INLINES.children(state, token, paragraph)
        else:
            token.children = _parse_inline(state, token, paragraph)


class _Renderer(RendererHTML):
    def renderInline(self, tokens: Any, options: Any, env: Any) -> str:  # noqa: N802
        memo = _INLINES.memo(tokens)
        if memo is None:
            return super().renderInline(tokens, options, env)
        html = memo.get("html")
        if html is None:
            html = memo["html"] = super().renderInline(tokens, options, env)
        return html


def _parser(*disabled: str) -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": True}, renderer_cls=_Renderer).enable("table")
    parser.core.ruler.at("inline", _inline_rule)
    return parser.disable(["text_join", *disabled])


_MARKDOWN = _parser()
# the same parser minus the (slow) HTML block rule, for bodies with no line starting with "<"
_MARKDOWN_INLINE_HTML = _parser("html_block")
_HTML_BLOCK_START = re.compile(r"^ {0,3}<", re.MULTILINE)
# three or more line breaks in a row, the same matches as ``\n{3,}``: written with a literal
# start, ``re`` finds the runs with a fast scan instead of trying the pattern at every character
BLANK_LINES = re.compile(r"\n\n\n+")


def markdown_to_html(text: str) -> str:
    """CommonMark + tables to HTML; a link alone in its paragraph becomes a button."""
    return markdown_parts(text)[0]


@functools.lru_cache(maxsize=512)
def markdown_parts(text: str) -> tuple[str, str]:
    """(HTML, plain text) of a rendered Markdown body; cached, as many subscribers share one."""
    # a body without "<" has no HTML block: the "<" test is the quick half of the search
    has_html = "<" in text and _HTML_BLOCK_START.search(text)
    parser = _MARKDOWN if has_html else _MARKDOWN_INLINE_HTML
    parts = _CHUNKS.parts(parser, text) if "\n\n" in text else None
    if parts is not None:
        return "".join([part.html() for part in parts]), _parts_text(parts)
    tokens = parser.parse(text)
    html = str(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {}))
    return html, _tokens_to_text(tokens)


class _Part:
    """The block tokens of one part of a body (see ``_Chunks``), with its HTML and the
    pieces of its plain text, each made once.

    Exact: the renderer writes each token from the token alone, but for an opening tag, which
    looks at the next token (always in the same part: a part's tags are balanced), and for a
    token after a hidden one (no token of a part is hidden); so the HTML of the body is the
    HTML of its parts end to end. The plain text too, see ``_parts_text``.
    """

    __slots__ = ("tokens", "_html", "_pieces")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self._html: str | None = None
        self._pieces: list[str] | None = None

    def html(self) -> str:
        if self._html is None:
            self._html = str(_MARKDOWN.renderer.render(self.tokens, _MARKDOWN.options, {}))
        return self._html

    def pieces(self) -> list[str]:
        """What ``_TokenText`` writes for the part alone (never changed once made)."""
        if self._pieces is None:
            maker = _TokenText()
            for token in self.tokens:
                maker.block(token)
            self._pieces = maker.out
        return self._pieces


def _parts_text(parts: list[_Part]) -> str:
    """``_tokens_to_text`` of the parts' tokens end to end, from the pieces of each part.

    Exact: for the tokens of a part (paragraphs, headings, rules: no list, no quote),
    ``_TokenText`` keeps no state but its output, read in one place: a paragraph or heading
    starts with a blank line unless the text so far ends with ". " or "- ". A part's pieces,
    made alone, start with that blank line when the part starts with a paragraph or heading;
    it is left out when the text of the parts before ends so.
    """
    out: list[str] = []
    for part in parts:
        pieces = part.pieces()
        if out and out[-1].endswith((". ", "- ")) and _opens_with_text(part):
            out += pieces[1:]
        else:
            out += pieces
    return _finish_text(out)


def _opens_with_text(part: _Part) -> bool:
    """Whether the part starts with a paragraph or a heading (an empty part does not)."""
    return bool(part.tokens) and part.tokens[0].type in ("paragraph_open", "heading_open")


class _Chunks:
    """Block tokens of the parts of a body between blank lines, kept by their text.

    A body is the same for every subscriber but for a line or two (a first name, a personal
    link): the parts between ``\\n\\n`` are parsed once each and their token lists put end to
    end. Exact when every part, parsed alone, gives only paragraphs, headings and rules at the
    top level and no link reference definition: such blocks all end at a blank line, so at
    each split the parser of the whole body has nothing open and starts the next part as it
    starts a document (no container, list or fence runs on, no definition reaches another
    part). Any other part (list, quote, code, table, HTML block, definitions) and the whole
    body is parsed at once. The renderer and the plain-text maker read neither the token
    ``map`` (line numbers, the one field that differs) nor change the tokens.
    """

    MAX = 4096
    LEAVES = frozenset(
        ("paragraph_open", "paragraph_close", "heading_open", "heading_close", "hr", "inline")
    )

    def __init__(self) -> None:
        self.found: dict[tuple[int, str], _Part | None] = {}

    def parts(self, parser: MarkdownIt, text: str) -> list[_Part] | None:
        """The body's parts in order, or None when it must be parsed at once."""
        parts: list[_Part] = []
        for chunk in text.split("\n\n"):
            key = (id(parser), chunk)
            if key in self.found:
                part = self.found[key]
            else:
                part = self._parse(parser, chunk)
                if len(self.found) >= self.MAX:
                    self.found = {}
                self.found[key] = part
            if part is None:
                return None
            parts.append(part)
        return parts

    def _parse(self, parser: MarkdownIt, chunk: str) -> _Part | None:
        env: dict[str, Any] = {}
        tokens = parser.parse(chunk, env)
        if env.get("references") or not all(t.type in self.LEAVES and not t.hidden for t in tokens):
            return None
        return _Part(tokens)


_CHUNKS = _Chunks()


def _mark_button(inline: Any) -> None:
    children = [
        child
        for child in inline.children or []
        if not (child.type in ("text", "softbreak") and not child.content.strip())
    ]
    if (
        len(children) >= 2
        and children[0].type == "link_open"
        and children[-1].type == "link_close"
        and sum(child.type == "link_open" for child in children) == 1
    ):
        children[0].attrSet("class", "button")


_BLOCK_TAGS = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "pre",
    "section", "article", "header", "footer", "center", "dl", "figure",
}  # fmt: skip
_SKIP_TAGS = {"style", "script", "head", "title", "template"}


class _TextMaker(HTMLParser):
    """HTML to readable plain text: paragraphs, lists, and links as ``text (url)``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[tuple[int, str]] = []
        self.lists: list[list[Any]] = []
        self.skip = 0
        self.quote = 0
        self.cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS or tag == "tr":
            self._break(1 if tag == "tr" else 2)
            if tag in ("ul", "ol"):
                self.lists.append([tag, 0])
            self.quote += tag == "blockquote"
            self.cells = 0
        elif tag == "li":
            self._start_item()
        elif tag == "br":
            self._break(1)
        elif tag == "hr":
            self._break(2)
            self.parts.append("----")
            self._break(2)
        elif tag in ("td", "th"):
            self.parts.append(" | " if self.cells else "")
            self.cells += 1
        elif tag == "a":
            self.links.append((len(self.parts), attr.get("href") or ""))
        elif tag == "img" and (attr.get("alt") or "").strip():
            self.parts.append(f"[{attr['alt']}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.links:
            self._end_link(*self.links.pop())
        elif tag in _BLOCK_TAGS:
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
            self.quote -= tag == "blockquote" and self.quote > 0
            self._break(2)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = re.sub(r"[ \t\n\r\f\v]+", " ", data)  # no-break spaces stay
        if self._at_line_start():
            text = text.lstrip()
            if text and self.quote:
                text = "> " * self.quote + text
        if text:
            self.parts.append(text)

    def _start_item(self) -> None:
        self._break(1)
        if not self.lists:
            self.lists.append(["ul", 0])
        current = self.lists[-1]
        current[1] += 1
        bullet = f"{current[1]}. " if current[0] == "ol" else "- "
        self.parts.append("  " * (len(self.lists) - 1) + bullet)

    def _end_link(self, start: int, href: str) -> None:
        label = "".join(self.parts[start:]).strip()
        target = href[7:] if href.lower().startswith("mailto:") else href
        if target and target != label and not href.startswith("#"):
            self.parts.append(f" ({target})")

    def _break(self, count: int) -> None:
        self.parts.append("\n" * count)

    def _at_line_start(self) -> bool:
        for part in reversed(self.parts):
            if part:
                return part.endswith("\n") or part.endswith("- ") and part.strip() == "-"
        return True

    def text(self) -> str:
        joined = "".join(self.parts)
        lines = [line.rstrip() for line in joined.split("\n")]
        return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


class _TokenText:
    """Plain text straight from markdown-it tokens (no second HTML parse)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.lists: list[list[Any]] = []
        self.quote = 0
        self.cells = 0

    def block(self, token: Any) -> None:
        kind = token.type
        if kind in ("paragraph_open", "heading_open") and not token.hidden:
            after_bullet = self.out and self.out[-1].endswith((". ", "- "))
            if not after_bullet:
                self.out.append("\n" + "  " * len(self.lists) if self.lists else "\n\n")
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrGet("start") or 1)
            self.lists.append([kind == "ordered_list_open", start - 1])
            self.out.append("\n\n" if len(self.lists) == 1 else "")
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
            self.out.append("\n\n" if not self.lists else "")
        elif kind == "list_item_open":
            current = self.lists[-1]
            current[1] += 1
            bullet = f"{current[1]}. " if current[0] else "- "
            self.out.append("\n" + "  " * (len(self.lists) - 1) + bullet)
        elif kind in ("blockquote_open", "blockquote_close"):
            self.quote += 1 if kind == "blockquote_open" else -1
            self.out.append("\n\n")
        elif kind == "tr_open":
            self.out.append("\n")
            self.cells = 0
        elif kind in ("th_open", "td_open"):
            self.out.append(" | " if self.cells else "")
            self.cells += 1
        elif kind in ("table_open", "table_close", "hr"):
            self.out.append("\n\n----\n\n" if kind == "hr" else "\n\n")
        elif kind in ("fence", "code_block"):
            self.out.append("\n\n" + token.content.rstrip("\n") + "\n\n")
        elif kind == "html_block":
            self.out.append("\n\n" + html_to_text(token.content) + "\n\n")
        elif kind == "inline":
            self.out.append(self.inline(token.children or []))

    def inline(self, children: list[Any]) -> str:
        memo = _INLINES.memo(children)
        text = memo.get("text") if memo is not None else None
        if text is None:
            text = _inline_text(children)
            if memo is not None:
                memo["text"] = text
        if self.quote:
            text = "\n".join("> " * self.quote + line for line in text.split("\n"))
        return text


def _inline_text(children: list[Any]) -> str:
    """An inline run as plain text, links written as ``text (url)``."""
    parts: list[str] = []
    links: list[tuple[int, str]] = []
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link_open":
            links.append((len(parts), str(child.attrGet("href") or "")))
        elif kind == "link_close" and links:
            start, href = links.pop()
            label = "".join(parts[start:]).strip()
            target = href[7:] if href.lower().startswith("mailto:") else href
            if target and target != label and not href.startswith("#"):
                parts.append(f" ({target})")
        elif kind == "image" and child.content.strip():
            parts.append(f"[{child.content}]")
        elif kind == "html_inline" and child.content.lower().startswith("<br"):
            parts.append("\n")
    return "".join(parts)


def _tokens_to_text(tokens: list[Any]) -> str:
    maker = _TokenText()
    for token in tokens:
        maker.block(token)
    return _finish_text(maker.out)


def _finish_text(pieces: list[str]) -> str:
    """The plain text of ``_TokenText`` pieces: no trailing spaces, at most one blank line."""
    lines = [line.rstrip() for line in "".join(pieces).split("\n")]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


def html_to_text(html: str) -> str:
    """Plain-text version of an HTML fragment or page, links written as ``text (url)``."""
    maker = _TextMaker()
    maker.feed(html)
    maker.close()
    return maker.text()
