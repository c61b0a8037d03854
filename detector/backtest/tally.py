"""Alert events -> what on-call would have lived through. Pure: no I/O, no clock.

This module owns turning the lifecycle's events into pages (one per FIRE: rule, series,
when the anomaly began, when the alert fired and ended, its peak score, the reading that
fired it against its band, and how it resolved), the pages per UTC day per rule, the
notifications of rules that aggregate ``by`` labels (a group pages when its first member
fires), the series that would page most, and the comparison of two configs.

Pages are counted when they fire inside the report range; an alert that fired during the
warm-up lead-in and is still firing at the range's start is listed (``before_range``) but
not counted.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detector.alerting.state import AlertEvent, EventKind
from detector.config import AlertRule
from detector.series.registry import Labels

DAY_MS = 86_400_000


class Resolution(enum.Enum):
    BACK_IN_BAND = "back_in_band"  # the series came back inside its band
    ADOPTED = "adopted"  # the detector adopted the new level as normal
    STALE = "stale"  # the series went silent while firing
    FIRING_AT_END = "firing_at_end"  # still firing when the range ended


@dataclass(frozen=True, slots=True)
class Page:
    """One alert that would have fired."""

    rule: str
    series: Labels
    since_ms: int  # first anomalous sample of the run
    fired_ms: int
    ended_ms: int | None  # None: still firing at the range's end
    resolution: Resolution
    severity: str  # the highest reached
    peak_score: float
    score: float  # the reading that fired it
    value: float  # what the detector saw: the value, or a counter's rate
    expected: float
    lower: float
    upper: float
    adopted_after_s: float | None = None
    before_range: bool = False  # fired during the warm-up lead-in
    rule_index: int = 0  # in the config's alerts (two rules may share a name)

    def firing_s(self, *, start_ms: int, end_ms: int) -> float:
        """Seconds spent firing inside [start_ms, end_ms]."""
        lo = max(self.fired_ms, start_ms)
        hi = end_ms if self.ended_ms is None else min(self.ended_ms, end_ms)
        return max(0, hi - lo) / 1000.0


@dataclass(slots=True)
class _Open:
    rule: int
    fire: AlertEvent
    level: int
    peak: float


@dataclass(frozen=True, slots=True)
class SeriesPages:
    """One series that would have paged."""

    series: Labels
    rule: str
    pages: int
    firing_s: float
    peak_score: float
    rule_index: int = 0


@dataclass(frozen=True, slots=True)
class RuleFigures:
    name: str
    pages: int
    notifications: int  # pages of a `by` rule collapse into one per group
    series_paged: int
    per_day: dict[str, int]  # UTC day -> pages fired that day


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one config would have done over the range."""

    pages: tuple[Page, ...]
    rules: tuple[RuleFigures, ...]
    top: tuple[SeriesPages, ...]  # every series that paged, most pages first

    @property
    def n_pages(self) -> int:
        return sum(r.pages for r in self.rules)


def days_of(start_ms: int, end_ms: int) -> list[str]:
    """The UTC days that [start_ms, end_ms] touches, as YYYY-MM-DD."""
    first, last = start_ms // DAY_MS, end_ms // DAY_MS
    return [
        datetime.fromtimestamp(d * 86_400, UTC).strftime("%Y-%m-%d") for d in range(first, last + 1)
    ]


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


class Tally:
    """Collects one config's events; ``outcome`` sums them up."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        start_ms: int,
        end_ms: int,
        labels_of: Callable[[int], Labels],
        rule_of: Callable[[int], int],
    ) -> None:
        self.rules = tuple(rules)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.labels_of = labels_of
        self.rule_of = rule_of
        self.pages: list[Page] = []
        self._open: dict[int, _Open] = {}
        self._group_firing: Counter[tuple[int, tuple[str, ...]]] = Counter()
        self._notifications: Counter[int] = Counter()

    def _group(self, rule: int, labels: Labels) -> tuple[int, tuple[str, ...]] | None:
        by = self.rules[rule].by
        if by is None:
            return None
        as_dict = dict(labels)
        return rule, tuple(as_dict.get(name, "") for name in by)

    def apply(self, events: Iterable[AlertEvent]) -> None:
        for ev in events:
            if ev.kind is EventKind.FIRE:
                rule = self.rule_of(ev.slot)
                if not 0 <= rule < len(self.rules):
                    continue
                self._open[ev.slot] = _Open(rule=rule, fire=ev, level=ev.level, peak=ev.peak)
                group = self._group(rule, self.labels_of(ev.slot))
                if group is not None:
                    if self._group_firing[group] == 0 and ev.ts_ms >= self.start_ms:
                        self._notifications[rule] += 1
                    self._group_firing[group] += 1
                elif ev.ts_ms >= self.start_ms:
                    self._notifications[rule] += 1
            elif ev.kind is EventKind.ESCALATE:
                held = self._open.get(ev.slot)
                if held is not None:
                    held.level = max(held.level, ev.level)
                    held.peak = max(held.peak, ev.peak)
            elif ev.kind in (EventKind.RESOLVE, EventKind.STALE):
                held = self._open.pop(ev.slot, None)
                if held is not None:
                    how = (
                        Resolution.STALE
                        if ev.kind is EventKind.STALE
                        else Resolution.ADOPTED
                        if ev.adopted_after_s is not None
                        else Resolution.BACK_IN_BAND
                    )
                    self._close(
                        ev.slot,
                        held,
                        ended_ms=ev.ts_ms,
                        how=how,
                        peak=max(held.peak, ev.peak),
                        adopted_after_s=ev.adopted_after_s,
                    )

    def _close(
        self,
        slot: int,
        held: _Open,
        *,
        ended_ms: int | None,
        how: Resolution,
        peak: float,
        adopted_after_s: float | None = None,
    ) -> None:
        labels = self.labels_of(slot)
        group = self._group(held.rule, labels)
        if group is not None:
            self._group_firing[group] -= 1
            if self._group_firing[group] <= 0:
                del self._group_firing[group]
        fire = held.fire
        if ended_ms is not None and ended_ms < self.start_ms:
            return  # over before the range began: part of the warm-up
        rule = self.rules[held.rule]
        self.pages.append(
            Page(
                rule=rule.name,
                series=labels,
                since_ms=fire.since_ms,
                fired_ms=fire.ts_ms,
                ended_ms=ended_ms,
                resolution=how,
                severity=rule.severities[min(held.level, len(rule.severities)) - 1].severity,
                peak_score=peak,
                score=fire.score,
                value=fire.value,
                expected=fire.expected,
                lower=fire.lower,
                upper=fire.upper,
                adopted_after_s=adopted_after_s,
                before_range=fire.ts_ms < self.start_ms,
                rule_index=held.rule,
            )
        )

    def outcome(self) -> Outcome:
        """Close the alerts still firing and sum up. Call once, after the last events."""
        for slot, held in list(self._open.items()):
            self._close(slot, held, ended_ms=None, how=Resolution.FIRING_AT_END, peak=held.peak)
        self._open.clear()
        pages = tuple(sorted(self.pages, key=lambda p: (p.fired_ms, p.rule, p.series)))
        return summarise(
            pages,
            self.rules,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            notifications=self._notifications,
        )


def summarise(
    pages: Sequence[Page],
    rules: Sequence[AlertRule],
    *,
    start_ms: int,
    end_ms: int,
    notifications: Counter[int] | None = None,
) -> Outcome:
    """Per-rule figures and the series ranked by pages (then time firing, then peak)."""
    counted = [p for p in pages if not p.before_range]
    figures = []
    for index, rule in enumerate(rules):
        mine = [p for p in counted if p.rule_index == index]
        per_day = dict.fromkeys(days_of(start_ms, end_ms), 0)
        for p in mine:
            per_day[_day(p.fired_ms)] = per_day.get(_day(p.fired_ms), 0) + 1
        figures.append(
            RuleFigures(
                name=rule.name,
                pages=len(mine),
                notifications=len(mine) if notifications is None else notifications[index],
                series_paged=len({p.series for p in mine}),
                per_day=per_day,
            )
        )
    by_series: dict[tuple[int, Labels], list[Page]] = {}
    for p in pages:
        by_series.setdefault((p.rule_index, p.series), []).append(p)
    top = [
        SeriesPages(
            series=series,
            rule=mine[0].rule,
            rule_index=index,
            pages=sum(1 for p in mine if not p.before_range),
            firing_s=sum(p.firing_s(start_ms=start_ms, end_ms=end_ms) for p in mine),
            peak_score=max(p.peak_score for p in mine),
        )
        for (index, series), mine in by_series.items()
    ]
    top.sort(key=lambda s: (-s.pages, -s.firing_s, -_finite(s.peak_score), s.rule_index, s.series))
    return Outcome(pages=tuple(pages), rules=tuple(figures), top=tuple(top))


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two configs over the same history: series that page under one and not the other."""

    only_a: tuple[SeriesPages, ...]
    only_b: tuple[SeriesPages, ...]
    both: int = 0
    pages_a: int = 0
    pages_b: int = 0
    per_rule: dict[str, tuple[int, int]] = field(default_factory=dict)


def compare(a: Outcome, b: Outcome) -> Comparison:
    """Series (any rule) with counted pages under ``a`` only, ``b`` only, and both."""

    def paged(o: Outcome) -> dict[Labels, SeriesPages]:
        out: dict[Labels, SeriesPages] = {}
        for s in o.top:
            if s.pages and s.series not in out:
                out[s.series] = s
        return out

    pa, pb = paged(a), paged(b)
    rules_a: Counter[str] = Counter()
    rules_b: Counter[str] = Counter()
    for r in a.rules:
        rules_a[r.name] += r.pages
    for r in b.rules:
        rules_b[r.name] += r.pages
    names = list(dict.fromkeys([*rules_a, *rules_b]))
    return Comparison(
        only_a=tuple(s for k, s in pa.items() if k not in pb),
        only_b=tuple(s for k, s in pb.items() if k not in pa),
        both=sum(1 for k in pa if k in pb),
        pages_a=a.n_pages,
        pages_b=b.n_pages,
        per_rule={n: (rules_a.get(n, 0), rules_b.get(n, 0)) for n in names},
    )
