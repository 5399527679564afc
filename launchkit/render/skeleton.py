"""Reuse the Markdown and CSS-inlining work across subscribers ("render once per shape").

Turning a rendered body into inlined HTML and plain text (Markdown parsing, the layout, CSS
inlining) costs ~1 ms, while the subscribers of one send usually differ only by a few plain
values: a first name, an address, the unsubscribe token. So after the (cheap, real) Jinja
render, each plain value is swapped for a unique placeholder; the result, the "skeleton", is
the cache key. The expensive conversion runs on the skeleton once, and for the next
subscribers with the same skeleton only the placeholders are swapped back.

Safety: only values made of letters, digits, spaces and ``'.,:/@+-_`` take part (characters
every stage copies unchanged); the cache key also holds a signature of each value (spaces,
non-ASCII, which punctuation, first/last character kind), because those change how Markdown
treats a value in a link or next to ``**``; and a skeleton is used only after one subscriber
proved it: the conversion of the real text must equal the skeleton's conversion with the
values swapped back, or that skeleton is never reused.
"""

from __future__ import annotations

import random
import re
import string
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

MAX_ENTRIES = 256
_SALT = "".join(random.choices(string.ascii_lowercase, k=10))
_ELIGIBLE = re.compile(r"[\w '.,:/@+-]{3,300}")
_SEEN = object()  # first sighting of a skeleton: not verified yet
_MISSING = object()

Convert = Callable[[str, str], tuple[str, str]]


def _signature(value: str) -> tuple[Any, ...]:
    def kind(char: str) -> str:
        return "a" if char.isalnum() else "p"

    marks = frozenset(char for char in value if not char.isalnum())
    return (value.isascii(), marks, kind(value[0]), kind(value[-1]))


def _placeholders(values: Mapping[str, Any], texts: tuple[str, ...]) -> list[tuple[str, str]]:
    if any("LkPh" in text for text in texts):
        return []
    chosen: list[str] = []
    for _, value in sorted(values.items()):
        if (
            isinstance(value, str)
            and value not in chosen
            and _ELIGIBLE.fullmatch(value)
            and value == value.strip()
            and "  " not in value
            and any(value in text for text in texts)
        ):
            chosen.append(value)
    return [(f"LkPh{index}x{_SALT}Z", value) for index, value in enumerate(chosen)]


def _forward(text: str, pairs: list[tuple[str, str]]) -> str:
    for placeholder, value in pairs:
        text = text.replace(value, placeholder)
    return text


def _backward(text: str, pairs: list[tuple[str, str]]) -> str:
    for placeholder, value in reversed(pairs):
        text = text.replace(placeholder, value)
    return text


class SkeletonCache:
    """A small LRU of verified skeletons: (body, layout) shape -> converted (html, text)."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self.hits = 0
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def convert(
        self, body: str, shell: str, values: Mapping[str, Any], convert: Convert
    ) -> tuple[str, str]:
        """``convert(body, shell)``, reusing the work of an earlier subscriber when safe."""
        pairs = _placeholders(values, (body, shell))
        if not pairs:
            return convert(body, shell)
        skeleton = (_forward(body, pairs), _forward(shell, pairs))
        key = (*skeleton, tuple(_signature(value) for _, value in pairs))
        entry = self._get(key)
        if isinstance(entry, tuple):
            self.hits += 1
            return _backward(entry[0], pairs), _backward(entry[1], pairs)
        real = convert(body, shell)
        if entry is _SEEN:  # the second subscriber with this shape: verify, then reuse
            converted = convert(*skeleton)
            same = (_backward(converted[0], pairs), _backward(converted[1], pairs)) == real
            self._put(key, converted if same else None)
        elif entry is _MISSING:
            self._put(key, _SEEN)
        return real

    def _get(self, key: tuple[Any, ...]) -> Any:
        """The entry: _MISSING, _SEEN, None (shape not reusable) or the converted pair."""
        with self._lock:
            entry = self._entries.get(key, _MISSING)
            if entry is not _MISSING:
                self._entries.move_to_end(key)
            return entry

    def _put(self, key: tuple[Any, ...], entry: Any) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
