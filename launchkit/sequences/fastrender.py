"""Render an email once per "shape", then fill in each subscriber's values: same bytes, faster.

Rendering one email fully (sandboxed Jinja, Markdown, CSS inlining, plain text) costs about
2 ms; a launch sends the same email to thousands of people who differ only by a few plain
values (first name, address, signed links). For each (email, language, timezone, which values
are empty) the email is rendered three times with three different sets of marker values (short,
medium, long). The rendering is reused only if the second and third renders equal the first
with the markers swapped: proof that the template treats those values as opaque text (no
branching on them, no filters changing them). Then a subscriber whose values use only
characters that no escaping step changes gets the cached render with their values put in.
Anything else (an apostrophe in a name, an underscore in an address, a template that tests
``first_name|length``) takes the full render path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

PERSONAL = ("first_name", "last_name", "email", "magnet_title", "checkout_url", "unsubscribe_url")
_URL_FIELDS = ("checkout_url", "unsubscribe_url")
_TEXT_OK = re.compile(r"[^\W_]+(?:[ .@+-][^\W_]+)*")
_URL_OK = re.compile(r"https?://[A-Za-z0-9.:-]+/[A-Za-z0-9/?=._~-]*")
_MARKERS: tuple[dict[str, str], ...] = (
    {
        "first_name": "Qzaf1 Kn-x.y@z+w",
        "last_name": "Qzal1 Vm-p.q",
        "email": "qzae.1-x+y@qza-e.invalid",
        "magnet_title": "Qzam1 Tt-u.v",
        "checkout_url": "http://qzac.invalid/buy/c_1-2.x?t=Ab_c-D.e",
        "unsubscribe_url": "http://qzau.invalid/u/Ub_c-D.e1",
    },
    {
        "first_name": "Wkbgf22 Rtzz-pqrs.quux@zed+wow Lorem-Ipsum",
        "last_name": "Wkbgl22 Mnop-qrst.uvwx Yzab-Cdef",
        "email": "wkbge.22-xyz+yz.abcdefgh@wkbg-exyz.example.invalid",
        "magnet_title": "Wkbgm22 Titre-du.guide Complet Deux",
        "checkout_url": "https://wkbgc.invalid:8443/buy/cc_33-44.y/zz?t=Zz_y-X.w9_" + "k" * 200,
        "unsubscribe_url": "https://wkbgu.invalid:8443/u/Zz_y-X.w9_abcdefghijk-LMNOP." + "q" * 200,
    },
    {
        "first_name": "Jq",
        "last_name": "Jv",
        "email": "j@q.io",
        "magnet_title": "Jm",
        "checkout_url": "http://j.q/b?t=J",
        "unsubscribe_url": "http://j.q/u/J",
    },
)
_PARTS = ("subject", "preheader", "html", "text")


def _plain(field: str, value: str) -> bool:
    pattern = _URL_OK if field in _URL_FIELDS else _TEXT_OK
    low, high = len(_MARKERS[2][field]), len(_MARKERS[1][field])
    return low <= len(value) <= high and pattern.fullmatch(value) is not None


class Template:
    """A render split at the marker positions: literal segments and the field between them."""

    def __init__(self, rendered: Any, markers: dict[str, str]):
        ordered = sorted(markers.items(), key=lambda kv: -len(kv[1]))
        by_marker = {marker: field for field, marker in ordered}
        pattern = re.compile("|".join(re.escape(marker) for _, marker in ordered))
        self.parts: dict[str, tuple[list[str], list[str]]] = {}
        for name in _PARTS:
            text: str = getattr(rendered, name)
            pieces = pattern.split(text)
            fields = [by_marker[m] for m in pattern.findall(text)]
            self.parts[name] = (pieces, fields)

    def fill(self, values: dict[str, str]) -> dict[str, str]:
        out = {}
        for name, (pieces, fields) in self.parts.items():
            chunks = [pieces[0]]
            for field, piece in zip(fields, pieces[1:], strict=True):
                chunks.append(values[field])
                chunks.append(piece)
            out[name] = "".join(chunks)
        return out


class FastRenderer:
    """Caches verified templates per shape; falls back to ``full_render`` when it must."""

    def __init__(self, make_result: Any):
        self.make_result = make_result
        self.cache: dict[tuple[Any, ...], Template | None] = {}
        self.hits = self.misses = 0

    def render(
        self,
        key: tuple[Any, ...],
        context: dict[str, Any],
        unsubscribe: str,
        full_render: Callable[[dict[str, Any], str], Any],
    ) -> Any:
        """The rendered email; ``full_render(context, unsubscribe_url)`` renders for real."""
        values = {f: str(context.get(f) or "") for f in PERSONAL if f != "unsubscribe_url"}
        values["unsubscribe_url"] = unsubscribe
        empty = tuple(not v for v in values.values())
        usable = all(not v or _plain(f, v) for f, v in values.items())
        if not usable:
            self.misses += 1
            return full_render(context, unsubscribe)
        shape = (*key, empty)
        if shape not in self.cache:
            self.cache[shape] = self._learn(context, values, full_render)
        template = self.cache[shape]
        if template is None:
            self.misses += 1
            return full_render(context, unsubscribe)
        self.hits += 1
        filled = template.fill(values)
        return self.make_result(
            filled["subject"], filled["preheader"], filled["html"], filled["text"], unsubscribe
        )

    def _learn(
        self,
        context: dict[str, Any],
        values: dict[str, str],
        full_render: Callable[[dict[str, Any], str], Any],
    ) -> Template | None:
        renders = []
        for markers in _MARKERS:
            used = {f: (m if values[f] else "") for f, m in markers.items()}
            ctx = {**context, **{f: v for f, v in used.items() if f != "unsubscribe_url"}}
            renders.append((full_render(ctx, used["unsubscribe_url"]), used))
        (first, first_used), *others = renders
        template = Template(first, {f: m for f, m in first_used.items() if m})
        for rendered, used in others:
            filled = template.fill(used)
            if any(filled[name] != getattr(rendered, name) for name in _PARTS):
                return None
        return template
