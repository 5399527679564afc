"""Deferred imports so `launchkit --help` and `--version` stay fast.

Command modules name the library modules they call at module level, but those modules pull in
SQLAlchemy, pandas, Stripe, Jinja2... ``lazy_module`` returns a stand-in at once; the real
module is imported, the usual way, when an attribute is first read, i.e. when a command
actually calls into it.

The stand-in is never put in ``sys.modules``: a module registered there before it has run (as
``importlib.util.LazyLoader`` does) makes a later ``from launchkit.checkout.offers import X``
run ``offers`` twice when ``launchkit.checkout`` is such a package (once from the package's own
``__init__``, once for the import that triggered it), and the two copies' exception classes
do not catch each other.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


class _Deferred(ModuleType):
    """Stands for module ``__name__``; each attribute read goes to the real module."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # introspection (copy, pickle, typing) sees a plain module
        return getattr(importlib.import_module(self.__name__), attr)


def lazy_module(name: str) -> ModuleType:
    """Module ``name`` if it is imported already, else a stand-in that imports it when an
    attribute is first read."""
    if name in sys.modules:
        return sys.modules[name]
    if importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return _Deferred(name)
