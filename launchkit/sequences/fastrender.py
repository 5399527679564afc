"""Render an email once per "shape", then fill in each subscriber's values: same bytes, faster.

Rendering one email fully (sandboxed Jinja, Markdown, CSS inlining, plain text) costs about
2 ms; a launch sends the same email to thousands of people who differ only by a few plain
values (first name, address, signed links). For each shape (email, language, launch dates as
shown in the subscriber's timezone, which values are empty) the email is rendered three times
with three different sets of marker values (short, medium, long). The rendering is reused only
if the second and third renders equal the first with the markers swapped: proof that the
template treats those values as opaque text (no branching on them, no filters changing them).
Then a subscriber whose values use only characters that no escaping step changes gets the
cached render with their values put in.

Values with an underscore, an apostrophe or a colon (``jean_dupont@``, ``O'Brien``, a lead
magnet called ``Checklist : lancer``) form a second class, learned and verified the same way
with markers that contain those characters; if any escaping step changes them, that class's
shapes are never reused. Anything else (a quote or ``<`` in a name, a template that tests
``first_name|length``) takes the full render path. The learned shapes live on the template
environment, which the process keeps while no template file changes.
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
_TEXT_EXTRA_OK = re.compile(r"[^\W_]+(?:(?: : |[ .@+_':-])[^\W_]+)*")
_EXTRA: dict[str, tuple[str, str, str]] = {
    "first_name": ("Qz'af1 Kn_x.y@z+w", "Wkb'gf22 Rtzz_pqrs.quux@zed+wow Lorem-Ip'sum", "J'q"),
    "last_name": ("Qza'l1 Vm_p.q", "Wkbg'l22 Mnop_qrst.uvwx Yzab-Cd'ef", "J_v"),
    "email": (
        "qz_ae.1-x+y@qza-e.invalid",
        "wkb_ge.22-xyz+yz.abc_defgh@wkbg-exyz.example.invalid",
        "j_@q.io",
    ),
    "magnet_title": (
        "Qz'am1 : Tt_u.v",
        "Wkbg'm22 Titre_du.guide : Complet:Deux Trois-Quatre Cinq.six Sept",
        "J:m",
    ),
}  # fmt: skip
_MARKERS_EXTRA: tuple[dict[str, str], ...] = tuple(
    {**markers, **{f: values[i] for f, values in _EXTRA.items()}}
    for i, markers in enumerate(_MARKERS)
)
_CLASSES = ((_MARKERS, _TEXT_OK), (_MARKERS_EXTRA, _TEXT_EXTRA_OK))


def _plain(field: str, value: str, markers: tuple[dict[str, str], ...], text: re.Pattern) -> bool:
    pattern = _URL_OK if field in _URL_FIELDS else text
    low, high = len(markers[2][field]), len(markers[1][field])
    return low <= len(value) <= high and pattern.fullmatch(value) is not None


def _value_class(values: dict[str, str]) -> int | None:
    """0: plain values; 1: with underscores or apostrophes; None: full render only."""
    for number, (markers, text) in enumerate(_CLASSES):
        if all(not v or _plain(f, v, markers, text) for f, v in values.items()):
            return number
    return None


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
        kind = _value_class(values)
        if kind is None:
            self.misses += 1
            return full_render(context, unsubscribe)
        shape = (*key, empty, kind)
        if shape not in self.cache:
            self.cache[shape] = self._learn(context, values, full_render, _CLASSES[kind][0])
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
        marker_sets: tuple[dict[str, str], ...],
    ) -> Template | None:
        renders = []
        for markers in marker_sets:
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
