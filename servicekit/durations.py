"""Durations as Prometheus writes them: ``90s``, ``15m``, ``1h30m``, ``7d``, ``1w``, ``250ms``.

One parser for both services, their configs and their command lines. A duration is one or
more ``<integer><unit>`` parts with units in decreasing order, each unit at most once
(Prometheus's ``model.ParseDuration``): ``ms``, ``s``, ``m``, ``h``, ``d`` (24 h), ``w``
(7 d), ``y`` (365 d). A plain number (``3600``, ``0.5``) is seconds, so configs written
before durations were accepted keep their meaning. Digits are ASCII only, and nothing
longer than ``MAX_SECONDS`` (10 years) or not finite is a duration: such a value is a
mistake, and downstream it overflows timestamps in milliseconds.

``Seconds`` is the pydantic field type: a config field declared with it accepts either
form and holds float seconds after validation; its JSON Schema offers both.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

UNIT_SECONDS: dict[str, float] = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_ORDER = list(UNIT_SECONDS)
_PART = re.compile(r"(\d{1,15})(ms|y|w|d|h|m|s)", re.ASCII)
_NUMBER = re.compile(r"[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
MAX_SECONDS = 10 * 365 * 86400.0
EXAMPLES = "90, 90s, 15m, 1h30m, 7d"


class DurationError(ValueError):
    """The text is not a duration; the message says what was expected."""


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0; ``"90"`` -> 90.0. Raises ``DurationError``."""
    stripped = text.strip()
    if not stripped:
        raise DurationError(f"empty duration: expected e.g. {EXAMPLES}")
    if _NUMBER.fullmatch(stripped):
        return _bounded(float(stripped), text)
    total = 0.0
    pos = 0
    last = -1
    for match in _PART.finditer(stripped):
        if match.start() != pos:
            break
        rank = _ORDER.index(match.group(2))
        if rank <= last:
            raise DurationError(
                f"{text!r}: units must go from largest to smallest, each "
                f"once (e.g. 1h30m, not 30m1h)"
            )
        last = rank
        total += int(match.group(1)) * UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(stripped) or pos == 0:
        raise DurationError(
            f"{text!r} is not a duration: expected seconds or Prometheus "
            f"syntax with units y w d h m s ms, e.g. {EXAMPLES}"
        )
    return _bounded(total, text)


def _bounded(value: float, text: object) -> float:
    if not math.isfinite(value):
        raise DurationError(f"{text!r} is not a finite number of seconds")
    if abs(value) > MAX_SECONDS:
        raise DurationError(f"{text!r} is longer than 10y, the longest duration accepted")
    return value


def format_duration(seconds: float) -> str:
    """5400.0 -> ``"1h30m"``; the inverse of ``parse_duration`` for whole milliseconds."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    left = round(abs(seconds) * 1000)
    parts = []
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = round(UNIT_SECONDS[unit] * 1000)
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        if re.fullmatch(r"\s*-" + _NUMBER.pattern + r"\s*", value, re.ASCII):
            return float(value)  # "-5": the field's bound says what is wrong with it
        return parse_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _bounded(float(value), value)  # YAML's .inf and .nan, 1e400, 10**30
    return value


# what an editor may accept as a string; parse_duration has the last word
JSON_PATTERN = (
    r"^(?=.)([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?"
    r"([0-9]+ms)?$"
)


class _DurationJsonSchema:
    """In the JSON Schema, a seconds field is a number (with its bounds) or a duration."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                handler(schema),
                {
                    "type": "string",
                    "pattern": JSON_PATTERN,
                    "examples": ["90s", "15m", "1h30m", "7d"],
                },
            ]
        }


# A config field in seconds that also takes "1h30m"; bounds go on the Field as before.
Seconds = Annotated[float, BeforeValidator(_coerce), _DurationJsonSchema()]
