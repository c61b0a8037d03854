"""Sandboxed parameter templates: ``{{ labels.pod }}`` and nothing more powerful.

This module owns the template language of step parameters, pre-conditions and
verifications. A template may only *name* a value: ``labels.<name>``,
``annotations.<name>``, ``alert.fingerprint``, ``alert.startsAt``, ``alert.status``,
``alert.generatorURL``, ``run.id``, ``run.url`` and the resolved Kubernetes object's
``target.kind|namespace|name|pod|node``. No expressions, no attribute access, no
calls: rendering is string substitution, and the result is validated by the parameter's
model afterwards (a Kubernetes name must be a valid name, a replica count a bounded
integer). Nothing is ever passed to a shell. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from remediator.errors import TemplateError

_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)$|"
                   r"^(alert)\.(fingerprint|startsAt|status|generatorURL)$|^(run)\.(id|url)$|"
                   r"^(target)\.(kind|namespace|name|pod|node)$")


def check(text: str) -> None:
    """Refuse a template naming something that can never exist; ValueError with the reason."""
    for expr in _TEMPLATE.findall(text):
        if not _NAME.match(expr):
            raise ValueError(f"template {{{{ {expr} }}}}: only labels.<name>, "
                             "annotations.<name>, alert.fingerprint|startsAt|status|"
                             "generatorURL, run.id|url and target.kind|namespace|name|pod|"
                             "node can be used")
    rest = _TEMPLATE.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"template {text!r}: unbalanced {{{{ }}}}")


def check_tree(value: Any) -> None:
    """``check`` every string in nested dicts and lists."""
    if isinstance(value, str):
        check(value)
    elif isinstance(value, dict):
        for item in value.values():
            check_tree(item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_tree(item)


def render(text: str, scope: Mapping[str, Mapping[str, str]]) -> str:
    """Substitute every ``{{ name }}``; TemplateError naming what the alert lacks."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if not _NAME.match(expr):
            raise TemplateError(f"template {{{{ {expr} }}}} is not allowed")
        kind, _, key = expr.partition(".")
        values = scope.get(kind, {})
        if key not in values:
            what = {"labels": "label", "annotations": "annotation"}.get(kind, f"{kind} field")
            raise TemplateError(f"{{{{ {expr} }}}}: the alert has no {what} {key!r}")
        return values[key]

    return _TEMPLATE.sub(one, text)


def render_tree(value: Any, scope: Mapping[str, Mapping[str, str]]) -> Any:
    """``render`` every string in nested dicts and lists; other values pass unchanged."""
    if isinstance(value, str):
        return render(value, scope)
    if isinstance(value, dict):
        return {k: render_tree(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_tree(v, scope) for v in value]
    return value


def scope_of(alert: Any, *, run_id: str = "", run_url: str = "",
             target: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The names a template may use, for one alert (a ``webhook.Alert``), run and target."""
    return {
        "target": dict(target or {}),
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "alert": {"fingerprint": str(alert.fingerprint), "startsAt": alert.starts_at,
                  "status": alert.status, "generatorURL": alert.generator_url},
        "run": {"id": run_id, "url": run_url},
    }
