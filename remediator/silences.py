"""Alertmanager v2 silences (``GET /api/v2/silences``): JSON → ``Silence``.

This module owns that wire format, for its two readers. The alert-quality report takes
``parse_silences``: every silence validated, once; one that is not a silence (no id, a bad
time, a regex Python cannot compile) is skipped and counted, never fatal. The ``silence``
guard takes ``muting``: only the state and matchers matter there, and a silence it cannot
judge counts as muting, so a run refuses rather than acts on a muted alert. Pure: the
caller fetches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from remediator.catalog.matchers import Matcher


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RawMatcher(_Raw):
    name: str
    value: str
    isRegex: bool  # wire name
    isEqual: bool = True


class RawStatus(_Raw):
    state: str = ""


class RawSilence(_Raw):
    id: str
    matchers: list[RawMatcher]
    startsAt: str
    endsAt: str
    createdBy: str = ""
    comment: str = ""
    status: RawStatus = RawStatus()


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    state: str  # active, pending, expired

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Every matcher holds for ``labels`` (as Alertmanager decides what it mutes)."""
        return all(m.matches(labels) for m in self.matchers)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def parse_silences(doc: Any) -> tuple[tuple[Silence, ...], int]:
    """The silences of an answer to ``GET /api/v2/silences`` and how many were skipped
    because they are not valid silences; ``doc`` not a list counts as none at all."""
    if not isinstance(doc, list):
        return (), 0
    out, skipped = [], 0
    for item in doc:
        try:
            raw = RawSilence.model_validate(item)
            matchers = tuple(Matcher.from_silence(m.model_dump()) for m in raw.matchers)
            out.append(
                Silence(
                    id=raw.id,
                    matchers=matchers,
                    starts_ms=_ms(raw.startsAt),
                    ends_ms=_ms(raw.endsAt),
                    created_by=raw.createdBy,
                    comment=raw.comment,
                    state=raw.status.state,
                )
            )
        except (ValidationError, ValueError, re.error):
            skipped += 1
    return tuple(out), skipped


def muting(doc: Any, labels: Mapping[str, str]) -> tuple[str, ...]:
    """The ids of the active silences in an answer to ``GET /api/v2/silences`` whose
    matchers all hold for ``labels`` (the ``silence`` guard's fact). A matcher whose regex
    Alertmanager accepts but Python does not is taken to hold; ``doc`` not a list mutes
    nothing (the caller says why it has no answer)."""
    if not isinstance(doc, list):
        return ()
    out = []
    for item in doc:
        if not isinstance(item, dict) or item.get("status", {}).get("state") != "active":
            continue
        if all(_matcher_holds(m, labels) for m in item.get("matchers", [])):
            out.append(str(item.get("id")))
    return tuple(out)


def _matcher_holds(raw: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    try:
        return Matcher.from_silence(raw).matches(labels)
    except re.error:  # cannot tell: assume it holds, so the guard refuses
        return True
