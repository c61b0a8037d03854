"""Per-entity multivariate scoring: the series of one entity (a pod's CPU, memory, latency,
errors) judged together, so an unusual *combination* shows even when each series alone
looks normal.

This module owns entity membership (from labels, under ``entities:`` rules) and the
periodic evaluation: each member contributes its deviation from its own expected value in
units of its band (what its univariate detector already knows); an entity's vector is
scored by its own model (an exponentially weighted Mahalanobis distance by default, or
river's HalfSpaceTrees), and the raw score is calibrated by the entity's own history (the
shared empirical calibration), so an entity score means what a series score means.
Python and numpy per entity, at the scrape-interval rate, never per sample.

Threads: new slots are queued from the event loop; ``evaluate`` (in a worker thread) is
the only writer of entity state and publishes an immutable snapshot for readers.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from detector.config import EntityRule
from detector.detectors._kernels.calibration import HIST_BINS, tail_probability
from detector.pipeline.worker import Pipeline
from detector.series.registry import Labels
from detector.series.selector import Selector

log = logging.getLogger(__name__)

DEVIATION_CAP = 5.0  # band widths; beyond is "far out" either way
CALIBRATION_DECAY = 0.999  # per evaluation


class Mahalanobis:
    """Exponentially weighted mean and covariance of a vector; the score is the distance of
    a new vector from the mean under that covariance (shrunk towards its diagonal so a
    handful of members and evaluations stay well-conditioned)."""

    SHRINK = 0.05

    def __init__(self, window: int) -> None:
        self.alpha = 2.0 / (window + 1.0)
        self.mean = np.zeros(0)
        self.cov = np.zeros((0, 0))
        self.n = 0

    def _grow(self, d: int) -> None:
        old = self.mean.shape[0]
        if d <= old:
            return
        mean, cov = np.zeros(d), np.eye(d)
        mean[:old], cov[:old, :old] = self.mean, self.cov
        self.mean, self.cov = mean, cov

    def score_learn(self, x: np.ndarray) -> float:
        self._grow(x.shape[0])
        r = x - self.mean
        diag = np.diag(np.diag(self.cov))
        cov = (1 - self.SHRINK) * self.cov + self.SHRINK * diag + 1e-6 * np.eye(x.shape[0])
        distance = math.sqrt(max(0.0, float(r @ np.linalg.solve(cov, r))))
        a = max(self.alpha, 1.0 / (self.n + 1))
        self.mean += a * r
        self.cov = (1 - a) * (self.cov + a * np.outer(r, r))
        self.n += 1
        return distance


class HalfSpaceTrees:
    """river's HalfSpaceTrees on deviations mapped into [0, 1]; its score times ten."""

    def __init__(self, rule: EntityRule) -> None:
        from river import anomaly  # imported only when configured: river is heavy

        m = rule.model
        self.model = anomaly.HalfSpaceTrees(
            n_trees=m.n_trees, height=m.height, window_size=m.window_size, seed=m.seed
        )

    def score_learn(self, x: np.ndarray) -> float:
        features = {
            str(i): float((v + DEVIATION_CAP) / (2 * DEVIATION_CAP)) for i, v in enumerate(x)
        }
        raw = float(self.model.score_one(features))
        self.model.learn_one(features)
        return raw * 10.0


def build_model(rule: EntityRule) -> Mahalanobis | HalfSpaceTrees:
    if rule.model.kind == "halfspacetrees":
        return HalfSpaceTrees(rule)
    return Mahalanobis(rule.model.window_size)


@dataclass
class Entity:
    rule: int
    key: tuple[str, ...]
    row: int  # calibration row
    model: Mahalanobis | HalfSpaceTrees
    members: dict[str, int] = field(default_factory=dict)  # feature name -> slot
    last_ts: int = 0
    evaluations: int = 0
    score: float = 0.0
    raw: float = 0.0
    top: str = ""
    evaluated_ms: int = 0


@dataclass(frozen=True, slots=True)
class EntityView:
    """One entity as the API shows it."""

    rule: str
    labels: dict[str, str]
    members: tuple[str, ...]
    score: float
    raw: float
    top: str
    evaluations: int
    evaluated_ms: int


def feature_name(labels: Labels, by: Sequence[str]) -> str:
    """A member's name inside its entity: its labels without the entity's own."""
    rest = [(k, v) for k, v in labels if k not in by and k != "__name__"]
    name = dict(labels).get("__name__", "")
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in rest) + "}" if rest else "")


class EntityTracker:
    def __init__(self, rules: Sequence[EntityRule], labels_of: Callable[[int], Labels]) -> None:
        self.rules = tuple(rules)
        self._selectors: tuple[Selector | None, ...] = tuple(r.selector() for r in self.rules)
        self.labels_of = labels_of
        self._pending: deque[int] = deque()
        self._entities: dict[tuple[int, tuple[str, ...]], Entity] = {}
        self._per_rule = [0] * len(self.rules)
        self.dropped = 0
        self.hist = np.zeros((1024, HIST_BINS), dtype=np.float64)
        self.htot = np.zeros((1024, 3), dtype=np.float64)
        self.snapshot: tuple[EntityView, ...] = ()
        self._lock = threading.Lock()  # one evaluation at a time

    def add_slots(self, slots: Sequence[int]) -> None:
        """Queue new slots for membership (called from the event loop)."""
        self._pending.extend(slots)

    def _admit(self) -> None:
        while self._pending:
            slot = self._pending.popleft()
            labels = self.labels_of(slot)
            as_dict = dict(labels)
            for r, (rule, sel) in enumerate(zip(self.rules, self._selectors, strict=True)):
                if sel is not None and not sel.matches(as_dict):
                    continue
                if any(name not in as_dict for name in rule.by):
                    continue
                key = tuple(as_dict[name] for name in rule.by)
                entity = self._entities.get((r, key))
                if entity is None:
                    if self._per_rule[r] >= rule.max_entities:
                        self.dropped += 1
                        continue
                    entity = self._new_entity(r, key)
                if len(entity.members) < rule.max_features:
                    entity.members[feature_name(labels, rule.by)] = slot

    def _new_entity(self, r: int, key: tuple[str, ...]) -> Entity:
        rule = self.rules[r]
        row = len(self._entities)
        if row >= self.hist.shape[0]:
            self.hist = np.concatenate([self.hist, np.zeros_like(self.hist)])
            self.htot = np.concatenate([self.htot, np.zeros_like(self.htot)])
        self.htot[row, 1] = 1.0  # the calibration's lazy-forgetting divisor
        entity = Entity(rule=r, key=key, row=row, model=build_model(rule))
        self._entities[(r, key)] = entity
        self._per_rule[r] += 1
        return entity

    def evaluate(self, p: Pipeline, now_ms: int) -> int:
        """Score every entity with new data since its last evaluation; return how many."""
        with self._lock:
            self._admit()
            done = 0
            for entity in self._entities.values():
                rule = self.rules[entity.rule]
                if len(entity.members) < rule.min_series:
                    continue
                slots = np.fromiter(entity.members.values(), dtype=np.int64)
                if slots.max() >= p.capacity:
                    continue
                newest = int(p.last_ts[slots].max())
                if newest <= entity.last_ts:
                    continue
                entity.last_ts = newest
                entity.evaluated_ms = now_ms
                self._score(entity, rule, p, slots)
                done += 1
            self.snapshot = tuple(self._view(e) for e in self._entities.values() if e.evaluations)
            return done

    def _score(self, entity: Entity, rule: EntityRule, p: Pipeline, slots: np.ndarray) -> None:
        half_band = p.last_upper[slots] - p.last_expected[slots]
        deviation = (p.last_input[slots] - p.last_expected[slots]) / half_band
        deviation = np.where(np.isfinite(deviation), deviation, 0.0)
        deviation = np.clip(deviation, -DEVIATION_CAP, DEVIATION_CAP)
        names = list(entity.members)
        raw = entity.model.score_learn(deviation)
        entity.evaluations += 1
        entity.raw = raw
        entity.top = names[int(np.argmax(np.abs(deviation)))]
        if entity.evaluations <= rule.warmup_evaluations:
            entity.score = 0.0
            return
        tail = tail_probability(self.hist, self.htot, entity.row, 0, raw, CALIBRATION_DECAY, 0.0)
        entity.score = 1.0 - min(1.0, tail)

    def _view(self, e: Entity) -> EntityView:
        rule = self.rules[e.rule]
        return EntityView(
            rule=rule.name,
            labels=dict(zip(rule.by, e.key, strict=True)),
            members=tuple(e.members),
            score=e.score,
            raw=e.raw,
            top=e.top,
            evaluations=e.evaluations,
            evaluated_ms=e.evaluated_ms,
        )

    @property
    def n_entities(self) -> int:
        return len(self._entities)
