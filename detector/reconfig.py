"""A config reload of the running detector: what it changes, decided from the old and new
config and the registry's reassignment of every tracked series.

This module owns the reload's decisions (which series keep their state, which alert
states start over, how the alert book follows, which settings wait for a restart) and its
result. It does no I/O: the app loads the file, runs ``reassign`` under the ingest lock,
queues the ``Reconfigure`` for the worker and calls ``follow`` on the event loop once the
worker applied it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from detector.alerting.book import AlertBook
from detector.alerting.state import AlertState
from detector.config import DetectorConfig, restart_only_changes
from detector.pipeline.worker import Reconfigure, SlotSpec
from detector.series.registry import Reassignment, SeriesRegistry


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did, or why it was refused (``problems``, one ``file:line: path:
    message`` each)."""

    ok: bool
    problems: tuple[str, ...] = ()
    kept: int = 0  # series that keep their learned state
    reset: int = 0  # series that start fresh: their detector or transform changed
    retired: int = 0  # series no rule tracks any more
    retracked: int = 0  # series an earlier reload retired, tracked again (fresh state)
    alerts_resolved: int = 0  # firing series whose alert rule changed or went away
    restart_needed: tuple[str, ...] = ()  # changed settings that wait for a restart
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.ok:
            return f"refused ({len(self.problems)} problems); the running config stays"
        text = (
            f"{self.kept} series keep their state, {self.reset} start fresh (detector "
            f"changed), {self.retired} no longer tracked, {self.retracked} tracked "
            "again (fresh)"
        )
        if self.restart_needed:
            text += (
                f"; {', '.join(self.restart_needed)} changed and take effect at the next restart"
            )
        return text

    def as_json(self) -> dict[str, object]:
        return {
            "status": "success" if self.ok else "error",
            "problems": list(self.problems),
            "series_kept": self.kept,
            "series_reset": self.reset,
            "series_retired": self.retired,
            "series_tracked_again": self.retracked,
            "restart_needed": list(self.restart_needed),
        }


def effective(
    running: DetectorConfig, loaded: DetectorConfig
) -> tuple[DetectorConfig, tuple[str, ...]]:
    """The config the detector runs with after a reload of ``loaded``, and the
    ``RESTART_ONLY`` settings that differ. Each of those keeps ``running``'s value (the
    listener, clients and tasks built at start still use it), so the runtime's config
    never shows a value that is not in effect, and since ``running`` is what is in
    effect, a pending change is named again at every reload until a restart applies it."""
    pending = tuple(restart_only_changes(running, loaded))
    return _with(loaded, running, pending), pending


def _with(cfg: DetectorConfig, source: DetectorConfig, paths: tuple[str, ...]) -> DetectorConfig:
    """``cfg`` with the value of each dotted path in ``paths`` taken from ``source``."""

    def put(model: BaseModel, parts: list[str], value: object) -> BaseModel:
        head = parts[0]
        if len(parts) > 1:
            value = put(getattr(model, head), parts[1:], value)
        return model.model_copy(update={head: value})

    out: BaseModel = cfg
    for path in paths:
        value: object = source
        for part in path.split("."):
            value = getattr(value, part)
        out = put(out, path.split("."), value)
    assert isinstance(out, DetectorConfig)
    return out


def alert_changed(
    registry: SeriesRegistry, old: DetectorConfig, new: DetectorConfig, plan: Reassignment
) -> NDArray[np.bool_]:
    """Per slot of ``plan``: its alert rule is not the same rule as before (another rule,
    a rule edited, none any more). Call before ``apply_alert_rules``."""
    n = plan.slot_alert.shape[0]
    before = registry.slot_alert[:n]
    after = plan.slot_alert
    same_rule = np.array([o == w for o in old.alerts for w in new.alerts], dtype=np.bool_).reshape(
        len(old.alerts), len(new.alerts)
    )
    changed = (before < 0) != (after < 0)
    both = (before >= 0) & (after >= 0)
    changed[both] = ~same_rule[before[both], after[both]]
    changed |= plan.slot_rule < 0  # retired: never alerts again
    return np.asarray(changed, dtype=np.bool_)


def reconfigure(
    plan: Reassignment,
    *,
    alerts: AlertState,
    changed: NDArray[np.bool_],
    on_applied: Callable[[], None],
    warm: bool = False,
) -> Reconfigure:
    """The worker's part of a reload (see ``pipeline.worker.Reconfigure``). With ``warm``,
    the series that start fresh hold their live samples until a warm start (requested by
    the caller once the worker applied the reload) brings their history back: a reload
    that changes a detector no longer leaves its series cold, or a weekly one daily."""

    def spec(slot: int, *, warm_up: bool = False) -> SlotSpec:
        if slot >= plan.slot_rule.shape[0]:
            raise IndexError(f"slot {slot} was created after reload {plan.generation}")
        index = int(plan.slot_rule[slot])
        rule = plan.rules[index] if index >= 0 else None
        params = rule.detector if rule is not None else plan.rules[0].detector
        return SlotSpec(
            slot,
            params,
            bool(plan.slot_counter[slot]),
            warm_up and index >= 0,
            int(plan.slot_alert[slot]) if index >= 0 else -1,
            plan.generation,
        )

    # fresh state: a detector or transform changed, or a series retired by an earlier
    # reload is tracked again (what it learned stopped when it was retired)
    fresh = sorted(plan.reset + plan.retracked)

    # a retired slot never alerts: its alert rule becomes -1
    alert_rule = np.where(plan.slot_rule >= 0, plan.slot_alert, -1).astype(np.int16)
    return Reconfigure(
        generation=plan.generation,
        alerts=alerts,
        reset=[spec(slot, warm_up=warm) for slot in fresh],
        alert_rule=alert_rule,
        alert_changed=changed,
        respec=spec,
        on_applied=on_applied,
    )


def follow(book: AlertBook, new: DetectorConfig, plan: Reassignment) -> None:
    """Give the alert book the new rules, on the event loop, after the worker applied the
    reload and its resolves reached the book: the alerts still firing (their rule did not
    change) move to their rule's new index."""
    book.rules = tuple(new.alerts)
    moves = []
    for alert in book.firing():
        slot = next(iter(alert.members))
        index = int(plan.slot_alert[slot]) if slot < plan.slot_alert.shape[0] else -1
        if index >= 0 and index != alert.rule_index:
            moves.append((alert, index))
    book.move(moves)
    book.related_window_ms = new.alerting.related_window_s * 1000.0
    book.max_related = new.alerting.max_related
