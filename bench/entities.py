"""Per-entity multivariate scoring: which model catches what, at what cost.

Synthetic entities of ``--members`` series driven by one shared factor (as a pod's CPU,
memory and latency rise and fall together), each series watched by the robust-level
detector. After a normal run, three kinds of anomaly are injected into different
entities: a *correlation break* (one member moves against the others, each about two
sigmas: no single series looks alarming), a *joint shift* (all members +2 sigmas) and a
*single spike* (one member +4 sigmas). For each entity model, the detection rate is the
share of injected anomalies scoring above the 99th percentile of normal scores, and the
cost is evaluations per second.

Usage: python bench/entities.py [--entities 200] [--members 4] [--steps 500]
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.config import EntityModel, EntityRule, RobustParams  # noqa: E402
from detector.metrics import build_metrics  # noqa: E402
from detector.pipeline.entities import EntityTracker  # noqa: E402
from detector.pipeline.worker import Batch, Pipeline, SlotSpec  # noqa: E402

KINDS = ("correlation_break", "joint_shift", "single_spike")


def run(model: str, n_entities: int, members: int, steps: int, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = n_entities * members
    labels = [(("__name__", f"m{i % members}"), ("pod", f"p{i // members}")) for i in range(n)]
    rule = EntityRule(
        name="pods",
        by=("pod",),
        warmup_evaluations=100,
        model=EntityModel(kind=model, window_size=200),
    )
    tracker = EntityTracker([rule], labels.__getitem__)
    tracker.add_slots(range(n))
    p = Pipeline(build_metrics(CollectorRegistry()), capacity=n)
    p.process(
        [
            Batch(
                slots=np.empty(0, np.int32),
                ts=np.empty(0, np.int64),
                bits=np.empty(0, np.uint64),
                new_slots=[SlotSpec(s, RobustParams(alpha=0.05)) for s in range(n)],
            )
        ]
    )
    slots = np.arange(n, dtype=np.int32)
    scale = rng.uniform(1, 10, n)

    def step(t: int, shocks: np.ndarray | None = None) -> None:
        factor = np.repeat(rng.normal(0, 1, n_entities), members)
        x = 100 + scale * (factor + 0.2 * rng.normal(0, 1, n))
        if shocks is not None:
            x = x + scale * shocks
        p.process([Batch(slots=slots, ts=np.full(n, t * 15_000, np.int64), bits=x.view(np.uint64))])

    normal: list[float] = []
    seconds = 0.0
    evaluations = 0
    for t in range(1, steps + 1):
        step(t)
        t0 = time.perf_counter()
        evaluations += tracker.evaluate(p, t)
        seconds += time.perf_counter() - t0
        if t > steps // 2:
            normal.extend(v.score for v in tracker.snapshot)
    threshold = float(np.quantile(normal, 0.99))
    shocks = np.zeros(n)
    kind_of: dict[str, str] = {}
    for e in range(n_entities):
        kind = KINDS[e % len(KINDS)]
        kind_of[f"p{e}"] = kind
        base = e * members
        if kind == "correlation_break":  # the shared factor swings one way, one member the other
            shocks[base : base + members] = 2.0
            shocks[base] = -2.0
        elif kind == "joint_shift":
            shocks[base : base + members] = 2.0
        else:
            shocks[base] = 4.0
    step(steps + 1, shocks)
    tracker.evaluate(p, steps + 1)
    caught = {k: 0 for k in KINDS}
    total = {k: 0 for k in KINDS}
    for view in tracker.snapshot:
        kind = kind_of[view.labels["pod"]]
        total[kind] += 1
        caught[kind] += view.score > threshold
    return {
        "model": model,
        "threshold_at_1pct_false_alarms": threshold,
        "detection": {k: caught[k] / max(total[k], 1) for k in KINDS},
        "evaluations_per_s": evaluations / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=210)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "entities": args.entities,
        "members": args.members,
        "steps": args.steps,
    }
    for model in ("mahalanobis", "halfspacetrees"):
        r = run(model, args.entities, args.members, args.steps)
        figures[model] = r
        d = r["detection"]
        print(
            f"{model:<15} correlation break {d['correlation_break']:.0%}  joint shift "
            f"{d['joint_shift']:.0%}  single spike {d['single_spike']:.0%}  "
            f"({r['evaluations_per_s']:,.0f} entity evaluations/s)",
            flush=True,
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
