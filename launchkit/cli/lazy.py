"""Deferred imports so `launchkit --help` and `--version` stay fast.

Command modules name the library modules they call at module level, but those modules pull in
SQLAlchemy, pandas, Stripe, Jinja2... ``lazy_module`` returns the module object at once and runs
its code only when an attribute is first read, i.e. when a command actually calls into it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """Return module ``name``, executed on first attribute access (already-imported: as is)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module
