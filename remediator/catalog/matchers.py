"""Alertmanager-style label matchers (``severity=~"warning|critical"``), parsed and applied.

This module owns the matcher syntax: ``name``, an operator (``=``, ``!=``, ``=~``, ``!~``)
and a value, quoted or not. Regexes are fully anchored, as in Alertmanager. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", re.compile(f"(?:{self.value})\\Z", re.S))

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self._regex is not None
        hit = self._regex.match(got) is not None
        return hit if self.op == "=~" else not hit

    @classmethod
    def from_silence(cls, m: Mapping[str, object]) -> Matcher:
        """A matcher of Alertmanager's v2 silence API (the inverse of ``to_silence``);
        re.error when its regex is not one Python accepts."""
        regex, equal = bool(m.get("isRegex")), bool(m.get("isEqual", True))
        op = ("=~" if regex else "=") if equal else ("!~" if regex else "!=")
        return cls(str(m.get("name", "")), op, str(m.get("value", "")))

    def to_silence(self) -> dict[str, object]:
        """The matcher as Alertmanager's v2 silence API takes it."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.op in ("=~", "!~"),
            "isEqual": self.op in ("=", "=~"),
        }


def parse_matcher(text: str) -> Matcher:
    """``name op value``; ValueError saying what is wrong."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(
            f"matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex"
        )
    name, op, raw = m.groups()
    value = raw
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"matcher {text!r}: bad quoted value ({exc.msg})") from exc
        if not isinstance(value, str):
            raise ValueError(f"matcher {text!r}: the value must be a string")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"matcher {text!r}: bad regex ({exc})") from exc
    return Matcher(name, op, value)


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
