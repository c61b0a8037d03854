"""One answer from every worker's answer: /metrics, the readiness probe, the JSON lists
and the console's recent anomalies.

Pure functions over what the workers answered (``None``: the worker did not answer).
Metrics keep every worker's series apart with a ``worker`` label; the JSON lists are
concatenated, re-sorted and cut to the request's ``limit``, and each series says which
worker holds it. The console's chart ids are slots, one numbering per worker: merged,
id ``slot * workers + worker`` names both, and ``history_target`` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merge_metrics(texts: Mapping[int, str | None]) -> str:
    """Every worker's exposition (text format 0.0.4) as one, each sample labelled with its
    ``worker``; ``vigil_fleet_worker_up{worker}`` says which answered."""
    families: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for s in family.samples:
                labels = {**s.labels, "worker": str(worker)}
                merged.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
    up = Metric("vigil_fleet_worker_up", "1 if the worker answered this scrape.", "gauge")
    for worker, text in sorted(texts.items()):
        up.samples.append(
            Sample("vigil_fleet_worker_up", {"worker": str(worker)}, 0.0 if text is None else 1.0)
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up]))
    return generate_latest(registry).decode("utf-8")


def merge_ready(answers: Mapping[int, tuple[int, str] | None]) -> tuple[int, str]:
    """200 when every worker is ready, else 503 naming the workers that are not."""
    problems = []
    for worker, answer in sorted(answers.items()):
        if answer is None:
            problems.append(f"worker {worker}: not answering (starting or restarting)")
        elif answer[0] != 200:
            problems.append(f"worker {worker}: {answer[1].strip()}")
    if problems:
        return 503, "\n".join(problems) + "\n"
    return 200, "ready\n"


def merge_list(
    path: str, answers: Mapping[int, tuple[int, bytes] | None], *, limit: int
) -> tuple[int, dict[str, Any]]:
    """The JSON list of /api/v1/series, /entities or /anomalies from every worker.

    A worker's error (a bad selector is a 400 on every worker) is the answer; a worker
    that does not answer makes it a 503, since a partial list would look complete.
    """
    docs: list[tuple[int, dict[str, Any]]] = []
    for worker, answer in sorted(answers.items()):
        if answer is None:
            return 503, {
                "status": "error",
                "error": f"worker {worker} is not answering (starting or restarting); retry",
            }
        status, body = answer
        doc = json.loads(body)
        if status != 200:
            return status, doc
        docs.append((worker, doc))
    data: list[dict[str, Any]] = []
    for worker, doc in docs:
        for item in doc.get("data", []):
            data.append({**item, "worker": worker} if path.endswith("/series") else item)
    out: dict[str, Any] = {"status": "success"}
    if path.endswith("/anomalies"):
        data.sort(key=lambda a: str(a.get("startsAt", "")))
    elif path.endswith("/entities"):
        data.sort(key=lambda e: float(e.get("score") or 0.0), reverse=True)
    if any("total" in doc for _, doc in docs):
        total = sum(int(doc.get("total", 0)) for _, doc in docs)
        out["total"] = total
        if path.endswith("/series"):
            out["truncated"] = total > limit
    out["data"] = data[:limit] if not path.endswith("/anomalies") else data
    return 200, out


def parse_limit(query: Mapping[str, str], default: int) -> int:
    """The ``limit`` of a list request (each worker checks it; a bad one fails there)."""
    text = query.get("limit", "")
    return int(text) if text.isdigit() else default


def as_texts(answers: Sequence[tuple[int, bytes] | None]) -> dict[int, str | None]:
    return {
        w: (a[1].decode("utf-8", "replace") if a is not None and a[0] == 200 else None)
        for w, a in enumerate(answers)
    }


def merge_recent(
    answers: Mapping[int, tuple[int, bytes] | None], *, workers: int, me: int
) -> tuple[int, dict[str, Any]]:
    """GET /api/v1/anomalies/recent of every worker: the series with a chart, newest
    first, then the alert members without one; chart ids made unique over the workers."""
    charts: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    head: dict[str, Any] = {}
    for worker, answer in sorted(answers.items()):
        if answer is None:
            return 503, {
                "status": "error",
                "error": f"worker {worker} is not answering (starting or restarting); retry",
            }
        status, body = answer
        doc = json.loads(body)
        if status != 200:
            return status, doc
        if worker == me or not head:
            head = {k: v for k, v in doc.items() if k != "data"}
        for item in doc.get("data", []):
            if item.get("id") is None:
                others.append(item)
            else:
                charts.append({**item, "id": int(item["id"]) * workers + worker})
    charts.sort(key=lambda a: int(a.get("last_ms") or 0), reverse=True)
    return 200, {**head, "status": "success", "data": charts + others}


def history_target(text: str, workers: int) -> tuple[int, int] | None:
    """A merged chart id -> (worker, its slot there); None if it is not one."""
    if not text.isdigit():
        return None
    merged = int(text)
    return merged % workers, merged // workers
