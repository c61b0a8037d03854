"""PromQL templates: where a template may stand in a query, how a value is escaped there,
and the check that the rendered query has the template's structure.

This module owns the PromQL side of template rendering. A ``{{ }}`` may only stand
inside a string literal (``"..."``, ``'...'`` or a backtick raw string); its value is
escaped by the literal's rules (Go's, which PromQL follows), and inside a regex matcher
(``=~``, ``!~``) or ``label_replace``'s regex argument it is regex-quoted first so it
matches itself only (in ``label_replace``'s replacement, ``$`` is written ``$$`` so it
expands nothing). A vigil.verify query may not gain a ``$selector`` from its values (the
detector substitutes it as plain text, even inside a string). Every rendered query
is parsed (``promql_parser``) and its tree compared with the template's (parsed with a
placeholder per template): any new operator, selector, function or matcher, or a string
value other than the one the template asked for, refuses the render. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import promql_parser

from remediator.catalog import placeholders
from remediator.errors import TemplateError

SELECTOR_VAR = "$selector"  # the detector fills it in vigil.verify queries
_SELECTOR_STANDIN = '__vigil_selector__="x"'
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$])")  # Go's regexp.QuoteMeta


class Kind(StrEnum):
    QUERY = "query"  # a PromQL expression
    VIGIL_QUERY = "vigil_query"  # a PromQL expression that may use the detector's $selector
    SELECTOR = "selector"  # label matchers: {a="b"} or a="b", c="d"


def quote_meta(value: str) -> str:
    """``value`` as a regex that matches exactly it (RE2 and Python alike)."""
    return _REGEX_META.sub(r"\\\1", value)


def escape(value: str, quote: str, *, kind: Kind = Kind.QUERY) -> str:
    """``value`` inside a PromQL string literal opened with ``quote``; TemplateError when
    it cannot be written there (a backtick or CR in a raw string, invalid Unicode)."""
    if _has_surrogates(value):
        raise TemplateError(f"{_short(value)} is not valid Unicode text")
    if kind is Kind.VIGIL_QUERY and SELECTOR_VAR in value:
        raise TemplateError(
            f"{_short(value)} contains {SELECTOR_VAR}, which the detector would replace"
        )
    if quote == "`":  # a raw string has no escapes (and Go drops its CRs); promql-parser,
        # unlike Prometheus, reads backslash escapes in it, so the two would disagree
        if "`" in value or "\r" in value or "\\" in value:
            raise TemplateError(
                f"{_short(value)} cannot be written in a backtick string "
                "(it holds a backtick, a backslash or a carriage return); "
                'use "..."'
            )
        return value
    if "\ufffd" in value and kind is Kind.SELECTOR:
        raise TemplateError(f"{_short(value)} holds U+FFFD, which a selector cannot carry")
    table = {
        "\\": "\\\\",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        quote: "\\" + quote,
        "\ufffd": "\\ufffd",
    }  # Prometheus' lexer reads a raw U+FFFD as bad UTF-8
    return "".join(table.get(c, c) for c in value)


@dataclass(frozen=True, slots=True)
class _Slot:
    quote: str  # '"', "'" or '`'


def _step(state: str, escaped: bool, c: str) -> tuple[str, bool]:
    """The lexer's state after ``c``: ``state`` is "" outside, the quote character inside
    a string literal, "#" in a comment; ``escaped``: ``c`` was a backslash inside a
    ``"..."`` or ``'...'`` literal, so the next character is taken as is."""
    if state == "":
        return (c if c in "\"'`#" else ""), False
    if state == "#":
        return ("" if c == "\n" else "#"), False
    if escaped:
        return state, False
    if c == "\\" and state != "`":
        return state, True
    return ("" if c == state else state), False


def _lex(literals: Sequence[str], kind: Kind) -> tuple[list[_Slot], list[str]]:
    """The string literal each template stands in, and the literals as the parser should
    see them (``$selector`` outside strings replaced by a stand-in matcher). ValueError
    for a template outside a string literal, in a comment or right after a backslash."""
    slots: list[_Slot] = []
    parsed: list[str] = []
    state, escaped = "", False
    for i, text in enumerate(literals):
        out: list[str] = []
        j = 0
        while j < len(text):
            if state == "" and kind is Kind.VIGIL_QUERY and text.startswith(SELECTOR_VAR, j):
                out.append(_SELECTOR_STANDIN)
                j += len(SELECTOR_VAR)
                continue
            state, escaped = _step(state, escaped, text[j])
            out.append(text[j])
            j += 1
        parsed.append("".join(out))
        if i == len(literals) - 1:
            break
        if state in ("", "#"):
            where = "a comment" if state == "#" else "a string literal"
            raise ValueError(
                f"template #{i + 1} stands {'in' if state else 'outside'} "
                f"{where}; a template may only stand inside a quoted label "
                'value, e.g. pod="{{ labels.pod }}"'
            )
        if escaped:
            raise ValueError(f"template #{i + 1} follows a backslash inside a string literal")
        slots.append(_Slot(state))
    return slots, parsed


# The Rust parser recurses: 50,000 nested brackets, or 5,000 chained operators, overflow
# its stack and kill the process. Queries past these bounds are refused before parsing.
MAX_DEPTH = 100
MAX_CODE = 4000  # characters outside string literals and comments


def _size(text: str) -> tuple[int, int]:
    """The deepest bracket nesting and the number of characters, outside string
    literals and comments."""
    depth = deepest = code = 0
    state, escaped = "", False
    for c in text:
        if state == "" and c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif state == "" and c in ")]}":
            depth -= 1
        state, escaped = _step(state, escaped, c)
        code += 0 if state else 1
    return deepest, code


def _parse(text: str, kind: Kind) -> Any:
    depth, code = _size(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} brackets deep")
    if code > MAX_CODE:
        raise ValueError(f"longer than {MAX_CODE} characters outside its string literals")
    if kind is Kind.SELECTOR:
        inner = text.strip()
        text = inner if inner.startswith("{") and inner.endswith("}") else "{" + inner + "}"
    expr = promql_parser.parse(text)
    if kind is Kind.SELECTOR and not (
        isinstance(expr, promql_parser.VectorSelector)
        and expr.name is None
        and expr.offset is None
        and expr.at is None
    ):
        raise ValueError(
            'a selector is a list of label matchers, e.g. namespace="shop", job="checkout"'
        )
    return expr


def shape(expr: Any, fill: Callable[[str], str] = lambda s: s) -> tuple[Any, ...]:
    """The structure of a parsed query as nested tuples: node kinds, operators, names,
    modifiers and durations as the parser gives them, and each string value (matcher
    values, string literals) passed through ``fill``. ValueError for a node it does not
    know (refuse rather than compare partly)."""
    p = promql_parser

    def matchers(ms: Any) -> tuple[Any, ...]:
        return (
            tuple((m.name, str(m.op), fill(m.value)) for m in ms.matchers),
            tuple(
                tuple((m.name, str(m.op), fill(m.value)) for m in group) for group in ms.or_matchers
            ),
        )

    def walk(e: Any) -> tuple[Any, ...]:
        if isinstance(e, p.VectorSelector):
            return ("vector", e.name, matchers(e.matchers), str(e.offset), _at(e.at))
        if isinstance(e, p.MatrixSelector):
            return ("matrix", walk(e.vector_selector), str(e.range))
        if isinstance(e, p.Call):
            return ("call", e.func.name, tuple(walk(a) for a in e.args))
        if isinstance(e, p.AggregateExpr):
            param = walk(e.param) if isinstance(e.param, p.Expr) else repr(e.param)
            return ("aggregate", str(e.op), walk(e.expr), param, str(e.modifier))
        if isinstance(e, p.BinaryExpr):
            return ("binary", str(e.op), walk(e.lhs), walk(e.rhs), str(e.modifier))
        if isinstance(e, p.UnaryExpr):
            return ("unary", walk(e.expr))
        if isinstance(e, p.ParenExpr):
            return ("paren", walk(e.expr))
        if isinstance(e, p.SubqueryExpr):
            return ("subquery", walk(e.expr), str(e.offset), _at(e.at), str(e.range), str(e.step))
        if isinstance(e, p.NumberLiteral):
            return ("number", repr(e.val))
        if isinstance(e, p.StringLiteral):
            return ("string", fill(e.val))
        raise ValueError(f"unknown PromQL node {type(e).__name__}")

    try:
        return walk(expr)
    except RecursionError as exc:
        raise ValueError("too many operators chained for Vigil to compare") from exc


def _at(at: Any) -> str | None:
    return None if at is None else f"{at.type}:{at.at}"


def _regex_slots(expr: Any) -> tuple[set[int], set[int]]:
    """The templates that stand in a regex (a regex matcher's value, ``label_replace``'s
    regex argument), and those in ``label_replace``'s replacement (where ``$1`` expands)."""
    found: set[int] = set()
    replacement: set[int] = set()

    def slots(text: str) -> set[int]:
        return {int(n) for n in placeholders.PATTERN.findall(text)}

    def visit(e: Any) -> None:
        if isinstance(e, promql_parser.VectorSelector):
            groups = [e.matchers.matchers, *e.matchers.or_matchers]
            for m in (m for g in groups for m in g):
                if str(m.op) in ("=~", "!~") or m.op in (
                    promql_parser.MatchOp.Re,
                    promql_parser.MatchOp.NotRe,
                ):
                    found.update(slots(m.value))
        elif isinstance(e, promql_parser.Call) and e.func.name == "label_replace":
            args = list(e.args)  # (vector, dst, replacement, src, regex)
            if len(args) == 5 and isinstance(args[2], promql_parser.StringLiteral):
                replacement.update(slots(args[2].val))
            if len(args) == 5 and isinstance(args[4], promql_parser.StringLiteral):
                found.update(slots(args[4].val))

    promql_parser.walk(expr, lambda e: visit(e))
    return found, replacement


@dataclass(frozen=True, slots=True)
class QueryTemplate:
    """A query template split at its ``{{ }}``; ``compile`` checks it."""

    literals: tuple[str, ...]
    kind: Kind
    slots: tuple[_Slot, ...]
    parsed_literals: tuple[str, ...]
    regex: frozenset[int]
    replacement: frozenset[int]  # in label_replace's replacement: "$" written "$$"
    tree: Any  # the parsed placeholder query (promql_parser.Expr)
    selectors: int  # the $selector the template itself writes

    @classmethod
    def compile(cls, literals: Sequence[str], kind: Kind) -> QueryTemplate:
        """ValueError saying what is wrong with the template itself."""
        slots, parsed = _lex(literals, kind)
        text = placeholders.join(parsed, placeholders.placeholders(len(slots)))
        try:
            tree = _parse(text, kind)
            shape(tree)
        except ValueError as exc:
            what = "selector" if kind is Kind.SELECTOR else "PromQL"
            raise ValueError(f"not valid {what}: {exc}") from exc
        regex, replacement = _regex_slots(tree)
        selectors = placeholders.join(literals, placeholders.placeholders(len(slots))).count(
            SELECTOR_VAR
        )
        return cls(
            tuple(literals),
            kind,
            tuple(slots),
            tuple(parsed),
            frozenset(regex),
            frozenset(replacement),
            tree,
            selectors,
        )

    def render(self, values: Sequence[str]) -> str:
        """The query with ``values`` escaped in; TemplateError if any value would change
        the query's structure or could not be written in its literal."""
        wanted = [
            quote_meta(v)
            if i in self.regex
            else v.replace("$", "$$")
            if i in self.replacement
            else v
            for i, v in enumerate(values)
        ]
        escaped = [
            escape(v, slot.quote, kind=self.kind)
            for v, slot in zip(wanted, self.slots, strict=True)
        ]
        try:
            got = shape(_parse(placeholders.join(self.parsed_literals, escaped), self.kind))
        except ValueError as exc:
            raise TemplateError(f"the rendered query is not valid PromQL ({exc}); refused") from exc
        if got != shape(self.tree, lambda text: placeholders.fill(text, wanted)):
            raise TemplateError(
                "a label value would change the query's structure (it does "
                "not stay inside its string literal); refused"
            )
        text = placeholders.join(self.literals, escaped)
        if self.kind is Kind.VIGIL_QUERY and text.count(SELECTOR_VAR) != self.selectors:
            # e.g. "$sel" + "ector" from two labels
            raise TemplateError(
                f"label values would write {SELECTOR_VAR}, which the "
                "detector would replace; refused"
            )
        return text


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _short(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")
