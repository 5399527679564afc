"""The Jinja2 sandbox for user-edited email templates, with resource limits.

``LaunchkitSandbox`` is Jinja2's ``ImmutableSandboxedEnvironment`` (no attribute walks to
``__globals__``, no mutation of passed data) plus limits that keep a hostile or careless
template from eating the CPU or the memory: ``range()`` is capped, every render has a budget
of loop iterations and of characters produced (loops, ``~`` and output expressions are routed
through it by rewriting the parsed template), and the operators and methods that can allocate
a huge value in one step (``*``, ``**``, ``%``, ``center``, ``ljust``, ``replace``, ``join``,
format widths) are checked before they run. ``lipsum`` is removed.
"""

from __future__ import annotations

import contextvars
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import Context, new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_RANGE = 10_000  # items in one range()
MAX_ITERATIONS = 200_000  # loop iterations per render
MAX_VALUE = 1_000_000  # characters in one computed value
MAX_OUTPUT = 5_000_000  # characters produced per render (outputs, ~, +, *, %)
MAX_WIDTH = 10_000  # width/count arguments of padding and batching filters and methods
MAX_INT_BITS = 100_000  # size of an integer computed with ** or *

_FORMAT_WIDTH = re.compile(r"%[#0 +\-]*(\d{5,}|\*)|%[#0 +\-]*\d*\.(\d{5,}|\*)")
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*(\d{5,}|\{)")
_WIDTH_FILTERS = ("center", "indent", "wordwrap", "truncate", "batch", "slice", "format", "tojson")


class _Budget:
    """Per-render counters of loop iterations and characters produced."""

    __slots__ = ("iterations", "chars")

    def __init__(self) -> None:
        self.iterations = 0
        self.chars = 0

    def charge(self, chars: int) -> None:
        self.chars += chars
        if self.chars > MAX_OUTPUT:
            raise SecurityError(f"the template produces more than {MAX_OUTPUT:,} characters")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("lk_budget", default=None)


def _budget() -> _Budget:
    return _BUDGET.get() or _Budget()


class _LimitedTemplate(jinja2.Template):
    """A template whose every render runs under a fresh resource budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        # set by hand rather than with a context manager, 1 µs less on each of 5 renders
        if _BUDGET.get() is not None:  # nested render (include, layout): share the outer budget
            return super().render(*args, **kwargs)
        token = _BUDGET.set(_Budget())
        try:
            return super().render(*args, **kwargs)
        finally:
            _BUDGET.reset(token)

    def new_context(
        self,
        vars: dict[str, Any] | None = None,  # noqa: A002 (Jinja's name)
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,  # noqa: A002 (Jinja's name)
    ) -> Context:
        """Jinja's ``new_context``, given the template's globals as one plain dict.

        Jinja copies the globals out of their ``ChainMap`` (template globals, then the
        environment's) with Python-level lookups, and lists its keys a second time for
        ``globals_keys``: 5 times per email. ``dict(chain)`` built with ``dict.update`` is the
        same dict, so Jinja builds the same context from it.
        """
        chain = self.globals
        plain = _merged(chain) if type(chain) is ChainMap else chain
        return new_context(self.environment, self.name, self.blocks, vars, shared, plain, locals)


def _merged(chain: ChainMap[str, Any]) -> dict[str, Any]:
    """``dict(chain)``, exactly: a ChainMap lists its keys from its last map to its first
    (``dict.fromkeys`` over the reversed maps) and takes each value from the first map that
    has the key, which is what updating a dict with the maps in reverse order gives."""
    merged: dict[str, Any] = {}
    for mapping in reversed(chain.maps):
        merged.update(mapping)
    return merged


def _limited_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of {len(rng):,} items is over the limit of {MAX_RANGE:,}")
    return rng


def _limited_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.iterations += 1
        if budget.iterations > MAX_ITERATIONS:
            raise SecurityError(f"the template loops more than {MAX_ITERATIONS:,} times")
        yield item


# a tuple, not ``str | bytes | list | tuple``: the same test, without building the union type
# on each of the ~25 outputs of an email
_SIZED = (str, bytes, list, tuple)


def _checked_size(value: Any) -> Any:
    if isinstance(value, _SIZED):
        if len(value) > MAX_VALUE:
            raise SecurityError(f"a value of {len(value):,} items is over the limit")
        if isinstance(value, str):
            _budget().charge(len(value))
    return value


def _check_width(value: Any, what: str) -> None:
    if isinstance(value, int | float) and abs(value) > MAX_WIDTH:
        raise SecurityError(f"{what} {value} is over the limit of {MAX_WIDTH:,}")


def _check_format_string(fmt: Any) -> None:
    if isinstance(fmt, str) and (_FORMAT_WIDTH.search(fmt) or _BRACE_WIDTH.search(fmt)):
        raise SecurityError("format widths over 9999 (or given by an argument) are not allowed")


def _check_multiply(left: Any, right: Any) -> None:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
            if len(seq) * count > MAX_VALUE:
                raise SecurityError(f"repeating a value {count:,} times is over the limit")
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("this multiplication makes a number too large")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if max(abs(base).bit_length(), 1) * exponent > MAX_INT_BITS and abs(base) > 1:
            raise SecurityError("this power makes a number too large")


_SIZE_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def _check_method_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(obj, "__name__", "")
    if name in _SIZE_METHODS:
        for value in (*args, *kwargs.values()):
            _check_width(value, f"{name}() width")
    elif name == "replace" and len(args) >= 2 and isinstance(args[1], str | bytes):
        if owner.count(args[0]) * len(args[1]) > MAX_VALUE:  # type: ignore[arg-type]
            raise SecurityError("replace() would make a value too large")
    elif name == "join" and args and hasattr(args[0], "__len__"):
        if len(owner) * len(args[0]) > MAX_VALUE:
            raise SecurityError("join() would make a value too large")


def _width_filter(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            _check_width(value, f"|{name} argument")
        if name == "format" and args:
            _check_format_string(args[0])
        return _checked_size(func(*args, **kwargs))

    wrapper.__name__ = func.__name__
    for attr in ("jinja_pass_arg",):
        if hasattr(func, attr):
            setattr(wrapper, attr, getattr(func, attr))
    return wrapper


def _replace_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> Any:
        if isinstance(s, str) and isinstance(new, str) and isinstance(old, str):
            if s.count(old) * len(new) > MAX_VALUE:
                raise SecurityError("|replace would make a value too large")
        return func(eval_ctx, s, old, new, count)

    wrapper.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    return wrapper


class LaunchkitSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox plus resource limits, for user-edited email templates."""

    template_class = _LimitedTemplate
    intercepted_binops = frozenset({"*", "**", "%", "+", "//"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)
        self.globals["range"] = _limited_range
        for name in _WIDTH_FILTERS:
            self.filters[name] = _width_filter(self.filters[name], name)
        self.filters["replace"] = _replace_filter(self.filters["replace"])
        self.filters["lk_iter"] = _iter_filter
        self.filters["lk_size"] = _size_filter

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left)
        return _checked_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_method_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_string(value.__self__)
        return wrapped

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _add_limits(tree)
        return tree


def _limit_call(name: str, node: nodes.Expr) -> nodes.Filter:
    """``node|lk_size``: a filter call is much cheaper than a sandboxed ``environment.call``."""
    return nodes.Filter(node, name, [], [], None, None).set_lineno(node.lineno)


@jinja2.pass_context  # pass_context also stops Jinja from calling it at compile time
def _iter_filter(context: Any, iterable: Iterable[Any]) -> Iterator[Any]:
    return _limited_iter(iterable)


@jinja2.pass_context
def _size_filter(context: Any, value: Any) -> Any:
    return _checked_size(value)


def _add_limits(tree: nodes.Template) -> None:
    """Route loops, ``~`` and output expressions through the per-render budget."""
    for loop in tree.find_all(nodes.For):
        loop.iter = _limit_call("lk_iter", loop.iter)
    for output in tree.find_all(nodes.Output):
        output.nodes = [
            child if isinstance(child, nodes.TemplateData) else _limit_call("lk_size", child)
            for child in output.nodes
        ]
    _wrap_concats(tree)


def _wrap_concats(node: nodes.Node) -> None:
    """Check the size of every ``a ~ b`` result (stops doubling a string in a loop)."""
    for field_name in node.fields:
        child = getattr(node, field_name, None)
        if isinstance(child, list):
            setattr(node, field_name, [_wrapped_concat(item) for item in child])
        elif isinstance(child, nodes.Node):
            setattr(node, field_name, _wrapped_concat(child))


def _wrapped_concat(node: Any) -> Any:
    if not isinstance(node, nodes.Node):
        return node
    _wrap_concats(node)
    return _limit_call("lk_size", node) if isinstance(node, nodes.Concat) else node
