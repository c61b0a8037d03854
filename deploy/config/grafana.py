"""Grafana's JSON model, the pieces the dashboards in deploy/config/ are made of.

Pure functions returning plain dicts (Grafana 10/11 schema 39): panels reading
Prometheus (PromQL), Loki (LogQL) or Tempo (TraceQL, service map), dashboard variables
and the dashboard around them. The datasources are variables (``${datasource}``,
``${loki}``, ``${tempo}``), so a dashboard works whatever the datasources are named; the
cluster form provisions ``prometheus``, ``loki`` and ``tempo`` (kube-prometheus-stack
values). Nothing here knows a metric name: deploy/config/dashboards.py and
deploy/config/platform.py say what is drawn.
"""

from __future__ import annotations

from typing import Any, Literal

Source = Literal["prometheus", "loki", "tempo"]
DATASOURCE_VARS: dict[Source, str] = {"prometheus": "datasource", "loki": "loki", "tempo": "tempo"}


def datasource(source: Source) -> dict[str, str]:
    return {"type": source, "uid": "${" + DATASOURCE_VARS[source] + "}"}


def _field_config(
    unit: str, thresholds: list[tuple[float, str]] | None, overrides: list[dict[str, Any]] | None
) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [
        {"color": color, "value": value} for value, color in (thresholds or [])
    ]
    return {
        "defaults": {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "custom": {"lineWidth": 1, "fillOpacity": 0},
        },
        "overrides": overrides or [],
    }


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    unit: str = "short",
    description: str = "",
    overrides: list[dict[str, Any]] | None = None,
    thresholds: list[tuple[float, str]] | None = None,
    source: Literal["prometheus", "loki"] = "prometheus",
) -> dict[str, Any]:
    """A time series panel; ``targets`` are (query, legend) pairs in PromQL or, with
    ``source="loki"``, LogQL metric queries."""
    ds = datasource(source)
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": ds,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": _field_config(unit, thresholds, overrides),
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
        "targets": [
            {"datasource": ds, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def logs(
    title: str, expr: str, *, x: int, y: int, w: int = 24, h: int = 12, description: str = ""
) -> dict[str, Any]:
    """A Loki logs panel: the lines of one LogQL log query, newest first."""
    ds = datasource("loki")
    return {
        "type": "logs",
        "title": title,
        "description": description,
        "datasource": ds,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "options": {
            "showTime": True,
            "wrapLogMessage": True,
            "sortOrder": "Descending",
            "enableLogDetails": True,
            "dedupStrategy": "none",
        },
        "targets": [{"datasource": ds, "expr": expr, "queryType": "range", "refId": "A"}],
    }


def traces(
    title: str,
    traceql: str,
    *,
    x: int,
    y: int,
    w: int = 12,
    h: int = 10,
    limit: int = 20,
    description: str = "",
) -> dict[str, Any]:
    """A table of the traces a TraceQL search finds (Tempo); a row opens the trace."""
    ds = datasource("tempo")
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": ds,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [
            {
                "datasource": ds,
                "queryType": "traceql",
                "query": traceql,
                "limit": limit,
                "tableType": "traces",
                "refId": "A",
            }
        ],
    }


def service_map(
    title: str, *, x: int, y: int, w: int = 24, h: int = 12, description: str = ""
) -> dict[str, Any]:
    """Tempo's service graph as a node graph (from the metrics generator's
    traces_service_graph_* series in Prometheus)."""
    ds = datasource("tempo")
    return {
        "type": "nodeGraph",
        "title": title,
        "description": description,
        "datasource": ds,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [{"datasource": ds, "queryType": "serviceMap", "refId": "A"}],
    }


def text(title: str, markdown: str, *, x: int, y: int, w: int = 24, h: int = 4) -> dict[str, Any]:
    return {
        "type": "text",
        "title": title,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "options": {"mode": "markdown", "content": markdown},
    }


def datasource_var(source: Source) -> dict[str, Any]:
    return {
        "name": DATASOURCE_VARS[source],
        "type": "datasource",
        "query": source,
        "label": source.capitalize(),
        "current": {},
        "hide": 0,
    }


def textbox(name: str, label: str, default: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "textbox",
        "label": label,
        "query": default,
        "current": {"text": default, "value": default},
        "hide": 0,
    }


def query_var(
    name: str, label: str, query: str, source: Literal["prometheus", "loki"] = "prometheus"
) -> dict[str, Any]:
    """A multi-value variable from label values; "All" means the regex ``.+``."""
    return {
        "name": name,
        "type": "query",
        "label": label,
        "datasource": datasource(source),
        "query": {"query": query, "refId": "var"},
        "refresh": 2,
        "includeAll": True,
        "allValue": ".+",
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    time_from: str,
    *,
    sources: tuple[Source, ...] = ("prometheus",),
) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "tags": ["vigil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": [*(datasource_var(s) for s in sources), *variables]},
        "panels": panels,
        "annotations": {"list": []},
        "links": [],
    }
