"""PromQL-style series selectors: ``http_requests_total{job="api", code=~"5.."}``.

This module owns parsing a selector string into matchers and testing a label set against
them, with Prometheus semantics: regexes are fully anchored, and a label that is absent
matches as the empty string. It must not know about series slots or the registry.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from detector.errors import SelectorError

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "`": "`"}


class MatchOp(enum.Enum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``name op "value"`` condition."""

    name: str
    op: MatchOp
    value: str
    regex: re.Pattern[str] | None

    def matches(self, value: str) -> bool:
        if self.op is MatchOp.EQ:
            return value == self.value
        if self.op is MatchOp.NE:
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None
        return hit if self.op is MatchOp.RE else not hit


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of matchers; ``text`` is the source it was parsed from."""

    text: str
    matchers: tuple[Matcher, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)


def build_matcher(name: str, op: MatchOp, value: str, *, where: str = "") -> Matcher:
    regex = None
    if op in (MatchOp.RE, MatchOp.NRE):
        try:
            regex = re.compile(value, re.DOTALL)
        except re.error as exc:
            raise SelectorError(f"{where}invalid regular expression {value!r}: {exc}") from exc
    return Matcher(name=name, op=op, value=value, regex=regex)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> SelectorError:
        return SelectorError(
            f"selector {self.text!r}, column {self.pos + 1}: {what}; "
            'expected a form like metric{label="value", other=~"re.*"}'
        )

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip_ws()
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise self.fail(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def op(self) -> MatchOp:
        self.skip_ws()
        for op in (MatchOp.RE, MatchOp.NRE, MatchOp.NE, MatchOp.EQ):
            if self.text.startswith(op.value, self.pos):
                self.pos += len(op.value)
                return op
        raise self.fail("expected one of =, !=, =~, !~")

    def string(self) -> str:
        quote = self.peek()
        if quote not in ('"', "'", "`"):
            raise self.fail("expected a quoted string")
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\" and quote != "`":
                if self.pos >= len(self.text):
                    break
                esc = self.text[self.pos]
                self.pos += 1
                if esc not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{esc}")
                out.append(_ESCAPES[esc])
            else:
                out.append(ch)
        raise self.fail("unterminated string")


def parse_selector(text: str) -> Selector:
    """Parse ``metric{matchers}``, ``{matchers}`` or a bare metric name.

    Raises SelectorError naming the column of the problem. A selector must have at least
    one matcher that cannot match the empty string, as in PromQL, so ``{}`` is refused.
    """
    sc = _Scanner(text)
    matchers: list[Matcher] = []
    if sc.peek() not in ("{", ""):
        name = sc.take(_NAME, "a metric name")
        matchers.append(build_matcher("__name__", MatchOp.EQ, name))
    if sc.peek() == "{":
        sc.pos += 1
        while sc.peek() != "}":
            label = sc.take(_LABEL, "a label name")
            op = sc.op()
            value = sc.string()
            where = f"selector {text!r}: label {label}: "
            matchers.append(build_matcher(label, op, value, where=where))
            if sc.peek() == ",":
                sc.pos += 1
            elif sc.peek() != "}":
                raise sc.fail("expected ',' or '}'")
        sc.pos += 1
    if sc.peek() != "":
        raise sc.fail("unexpected text after the selector")
    selector = Selector(text=text, matchers=tuple(matchers))
    if not matchers or selector.matches({}):
        raise SelectorError(
            f"selector {text!r} matches every series, including the empty one; "
            'add a matcher such as {__name__=~".+"}'
        )
    return selector
