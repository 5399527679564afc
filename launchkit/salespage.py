"""An offer's sales page content: ``workspace/pages/<offer>.md`` (front matter + Markdown).

Front matter keys (all optional): ``headline``, ``subheadline``, ``image`` (a file in
``pages/``), ``image_alt``, ``guarantee``. The body is split at its ``##`` headings into
sections; in a section with ``###`` headings (FAQ, modules), each one becomes a question that
opens on a tap. Raw HTML in the file is shown as text, never run: the file is the creator's,
but the page is the buyers'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from launchkit.errors import InputError

PAGES_DIR = "pages"
IMAGE_SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                  ".webp": "image/webp", ".gif": "image/gif"}  # fmt: skip
FRONT_KEYS = ("headline", "subheadline", "image", "image_alt", "guarantee")
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
_H2 = re.compile(r"^## +(.+?) *#*$", re.MULTILINE)
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_H3 = re.compile(r"^### +(.+?) *#*$", re.MULTILINE)


@dataclass(frozen=True)
class Section:
    """One ``##`` section: its title, its intro HTML, and its ``###`` items (title, HTML)."""

    title: str
    html: str
    items: tuple[tuple[str, str], ...] = ()
    anchor: str = ""


@dataclass(frozen=True)
class SalesPage:
    """What the sales page shows around its form."""

    headline: str = ""
    subheadline: str = ""
    image: str = ""
    image_alt: str = ""
    guarantee: str = ""
    intro: str = ""
    sections: tuple[Section, ...] = field(default_factory=tuple)


def page_path(workspace: Path, slug: str) -> Path:
    """Where the creator writes the page of offer ``slug``."""
    return workspace / PAGES_DIR / f"{slug}.md"


def load_page(workspace: Path, slug: str) -> SalesPage | None:
    """The parsed ``pages/<slug>.md``, or None when the offer has none (a bare page)."""
    path = page_path(workspace, slug)
    if not _SLUG.fullmatch(slug) or not path.is_file():
        return None
    return parse_page(path.read_text(encoding="utf-8"), f"{PAGES_DIR}/{slug}.md")


def parse_page(text: str, name: str) -> SalesPage:
    """Parse a page file; InputError names the file and line of a mistake."""
    meta, body = _front_matter(text.lstrip("\ufeff"), name)
    image = str(meta.get("image") or "")
    if image and (Path(image).name != image or Path(image).suffix.lower() not in IMAGE_SUFFIXES):
        raise InputError(
            f'{name}: image "{image}" must be a .jpg, .png, .webp or .gif file name '
            f"in the {PAGES_DIR}/ folder."
        )
    parts = _H2.split(body)
    sections = tuple(
        _section(title, content, index) for index, (title, content) in enumerate(_pairs(parts[1:]))
    )
    return SalesPage(
        headline=str(meta.get("headline") or ""),
        subheadline=str(meta.get("subheadline") or ""),
        image=image,
        image_alt=str(meta.get("image_alt") or ""),
        guarantee=str(meta.get("guarantee") or ""),
        intro=render_markdown(parts[0]),
        sections=sections,
    )


def image_file(workspace: Path, page: SalesPage) -> tuple[Path, str] | None:
    """(path, media type) of the page's image, if it names one that exists in pages/."""
    if not page.image:
        return None
    path = workspace / PAGES_DIR / page.image
    if not path.is_file():
        return None
    return path, IMAGE_SUFFIXES[path.suffix.lower()]


def render_markdown(text: str) -> str:
    """CommonMark + tables to HTML with raw HTML escaped (shown, not run)."""
    return str(_MARKDOWN.render(text)) if text.strip() else ""


def _pairs(parts: list[str]) -> list[tuple[str, str]]:
    return [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]


def _section(title: str, content: str, index: int) -> Section:
    parts = _H3.split(content)
    items = tuple((head, render_markdown(text)) for head, text in _pairs(parts[1:]))
    return Section(title=title, html=render_markdown(parts[0]), items=items, anchor=f"s{index + 1}")


def _front_matter(text: str, name: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            front, body = "".join(lines[1:index]), "".join(lines[index + 1 :])
            break
    else:
        raise InputError(f'{name}: the front matter is not closed by a "---" line.')
    try:
        meta = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 2}" if mark is not None else ""
        raise InputError(f"{name}{line}: invalid front matter.") from e
    if not isinstance(meta, dict):
        raise InputError(f'{name} line 2: the front matter must be "key: value" lines.')
    unknown = sorted(set(map(str, meta)) - set(FRONT_KEYS))
    if unknown:
        raise InputError(
            f"{name}: unknown front matter key {unknown[0]!r} (known: {', '.join(FRONT_KEYS)})."
        )
    return {str(k): v for k, v in meta.items()}, body


# the few words the page adds around the creator's content
LABELS = {
    "fr": {"jump": "Je m'inscris", "guarantee": "Garantie"},
    "en": {"jump": "Join now", "guarantee": "Guarantee"},
}
