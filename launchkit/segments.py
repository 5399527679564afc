"""Segment expressions: ``tag:webinar and not tag:buyer and signed_up>=2026-01-01``.

Grammar (keywords are case-insensitive)::

    expr      := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" expr ")" | condition
    condition := FIELD ":" VALUE | "signed_up" OP DATE
    FIELD     := tag | source | status | magnet | timezone      (magnet:X is tag:magnet:X)
    OP        := >= | > | <= | < | =                             (DATE is YYYY-MM-DD)

A value is a run of characters other than spaces and parentheses, or a double-quoted string.
Expressions compile to portable SQL over ``subscribers`` (tags through ``EXISTS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select
from sqlalchemy.orm import Session

from launchkit.errors import InputError, NotFound
from launchkit.models import Segment, Subscriber, SubscriberStatus, SubscriberTag

FIELDS = ("tag", "source", "status", "magnet", "timezone")
DATE_FIELDS = ("signed_up",)
OPERATORS = (">=", "<=", ">", "<", "=")
KEYWORDS = ("and", "or", "not")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_TOKEN = re.compile(
    r'\s*(?:(?P<paren>[()])|(?P<op>>=|<=|>|<|=)|"(?P<quoted>[^"]*)"|(?P<word>[^\s()"<>=]+))'
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


Node = Condition | Not | BoolOp


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.pos = 0

    def fail(self, message: str, column: int | None = None) -> InputError:
        if column is None:
            column = self.peek().column
        return InputError(f'Segment "{self.expr}": {message} at column {column}')

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("expected a condition such as tag:webinar")
        node = self.parse_or()
        if self.peek().kind != "end":
            raise self.fail(f'expected "and", "or" or the end, found "{self.peek().text}"')
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.keyword("or"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_not()]
        while self.keyword("and"):
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def parse_not(self) -> Node:
        if self.keyword("not"):
            return Not(self.parse_not())
        token = self.peek()
        if token.kind == "paren" and token.text == "(":
            self.take()
            node = self.parse_or()
            if self.peek().text != ")" or self.peek().kind != "paren":
                raise self.fail('expected ")"')
            self.take()
            return node
        return self.parse_condition()

    def parse_condition(self) -> Condition:
        token = self.peek()
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise self.fail("expected a condition")
        field, colon, text = token.text.partition(":")
        field = field.lower()
        if field in DATE_FIELDS and not colon:
            return self.parse_date(self.take())
        if field not in FIELDS:
            known = ", ".join([*FIELDS, *DATE_FIELDS])
            raise self.fail(f'unknown field "{field}" (use {known})')
        self.take()
        if not colon:
            raise self.fail(f'expected ":" after "{field}"')
        value = _Token("word", text, token.column + len(field) + 1)
        if not text:
            value = self.peek()
            if value.kind not in ("word", "quoted") or value.text.lower() in KEYWORDS:
                raise self.fail(f'expected a value after "{field}:"')
            self.take()
        if not value.text.strip():
            raise self.fail(f'expected a value after "{field}:"', value.column)
        return _field_condition(self, field, value)

    def parse_date(self, field: _Token) -> Condition:
        op = self.peek()
        if op.kind != "op":
            raise self.fail(f'expected one of {" ".join(OPERATORS)} after "{field.text}"')
        self.take()
        value = self.peek()
        if value.kind != "word":
            raise self.fail(f'expected a date like 2026-01-01 after "{field.text}{op.text}"')
        try:
            date.fromisoformat(value.text)
        except ValueError:
            raise self.fail(f'"{value.text}" is not a date like 2026-01-01') from None
        self.take()
        return Condition(field.text.lower(), op.text, value.text)


def _field_condition(parser: _Parser, field: str, value: _Token) -> Condition:
    text = value.text
    if field == "magnet":
        return Condition("tag", "=", f"magnet:{text.strip().lower()}")
    if field == "tag":
        return Condition("tag", "=", text.strip().lower())
    if field == "status" and text.lower() not in set(SubscriberStatus):
        allowed = ", ".join(SubscriberStatus)
        raise parser.fail(f'unknown status "{text}" (use {allowed})', value.column)
    return Condition(field, "=", text.lower() if field == "status" else text)


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        match = _TOKEN.match(expr, pos)
        if match is None or match.end() == pos:
            column = len(expr) - len(expr[pos:].lstrip()) + 1
            raise InputError(f'Segment "{expr}": unexpected character at column {column}')
        kind = match.lastgroup or "word"
        text = match.group(kind)
        tokens.append(_Token(kind, text, match.start(kind) + 1 - (kind == "quoted")))
        pos = match.end()
    tokens.append(_Token("end", "", len(expr) + 1))
    return tokens


def parse_segment(expr: str) -> Node:
    """Parse an expression to its syntax tree; errors name the column at fault."""
    if "\n" in expr or "\r" in expr:
        raise InputError("A segment expression must fit on one line.")
    return _Parser(expr).parse()


def _day_start(text: str, tz: tzinfo) -> datetime:
    return datetime.combine(date.fromisoformat(text), datetime.min.time(), tz).astimezone(UTC)


def _date_clause(op: str, text: str, tz: tzinfo) -> ColumnElement[bool]:
    start = _day_start(text, tz)
    end = (start.astimezone(tz) + timedelta(days=1)).replace(hour=0).astimezone(UTC)
    column = Subscriber.signed_up_at
    clauses: dict[str, ColumnElement[bool]] = {
        ">=": column >= start,
        ">": column >= end,
        "<": column < start,
        "<=": column < end,
        "=": and_(column >= start, column < end),
    }
    return clauses[op]


def _compile(node: Node, tz: tzinfo) -> ColumnElement[bool]:
    if isinstance(node, Not):
        return not_(_compile(node.operand, tz))
    if isinstance(node, BoolOp):
        parts = [_compile(item, tz) for item in node.operands]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if node.field == "tag":
        return exists(
            select(SubscriberTag.subscriber_id).where(
                SubscriberTag.subscriber_id == Subscriber.id, SubscriberTag.tag == node.value
            )
        )
    if node.field == "signed_up":
        return _date_clause(node.op, node.value, tz)
    column = {
        "source": Subscriber.source,
        "status": Subscriber.status,
        "timezone": Subscriber.timezone,
    }[node.field]
    return column == node.value


def segment_filter(expr: str, *, tz: tzinfo = UTC) -> ColumnElement[bool]:
    """A WHERE clause over ``Subscriber`` for an expression; dates are days in ``tz``."""
    return _compile(parse_segment(expr), tz)


def resolve_segment(session: Session, name_or_expr: str) -> str:
    """The expression of a saved segment, or ``name_or_expr`` itself once checked."""
    saved = session.scalar(select(Segment.expression).where(Segment.name == name_or_expr))
    if saved is not None:
        return saved
    if NAME.match(name_or_expr) and name_or_expr.lower() not in (*FIELDS, *DATE_FIELDS):
        raise NotFound(
            f'No saved segment is named "{name_or_expr}" '
            "(an expression looks like tag:webinar and not tag:buyer)."
        )
    parse_segment(name_or_expr)
    return name_or_expr


def save_segment(session: Session, name: str, expr: str, *, now: datetime) -> Segment:
    """Save (or replace) a named segment after checking its expression."""
    if not NAME.match(name):
        raise InputError(
            f'Segment name "{name}" must use lowercase letters, digits, dashes and underscores.'
        )
    parse_segment(expr)
    segment = session.scalar(select(Segment).where(Segment.name == name))
    if segment is None:
        segment = Segment(name=name, expression=expr, created_at=now)
        session.add(segment)
    else:
        segment.expression = expr
    session.flush()
    return segment


def get_segment(session: Session, name: str) -> Segment:
    """A saved segment by name."""
    segment = session.scalar(select(Segment).where(Segment.name == name))
    if segment is None:
        raise NotFound(f'No saved segment is named "{name}".')
    return segment


def list_segments(session: Session) -> list[Segment]:
    """Saved segments by name."""
    return list(session.scalars(select(Segment).order_by(Segment.name)))
