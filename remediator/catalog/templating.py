"""Sandboxed parameter templates: ``{{ labels.pod }}`` and nothing more powerful.

This module owns the template language of step parameters, pre-conditions and
verifications. A template may only *name* a value: ``labels.<name>``,
``annotations.<name>``, ``alert.fingerprint``, ``alert.startsAt``, ``alert.status``,
``alert.generatorURL``, ``run.id``, ``run.url`` and the resolved Kubernetes object's
``target.kind|namespace|name|pod|node``. No expressions, no attribute access, no
calls. Label values are attacker-controlled (any workload can write metrics), so rendering
knows its *context*: plain text is substituted as is and validated by the parameter's
model afterwards (a Kubernetes name must be a valid name, a replica count a bounded
integer); a PromQL query, a vigil.verify selector, a URL or an Alertmanager matcher gets
each value escaped for the spot it stands in, and the rendered result is parsed back and
must have the template's structure (``promql``, ``urls``, ``matchers``), or the render is
refused with a TemplateError. Nothing is ever passed to a shell. Pure.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from remediator.catalog import matchers, placeholders, promql, urls
from remediator.errors import TemplateError

_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(
    r"^(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)$|"
    r"^(alert)\.(fingerprint|startsAt|status|generatorURL)$|^(run)\.(id|url)$|"
    r"^(target)\.(kind|namespace|name|pod|node)$"
)


def check(text: str) -> None:
    """Refuse a template naming something that can never exist; ValueError with the reason."""
    for expr in _TEMPLATE.findall(text):
        if not _NAME.match(expr):
            raise ValueError(
                f"template {{{{ {expr} }}}}: only labels.<name>, "
                "annotations.<name>, alert.fingerprint|startsAt|status|"
                "generatorURL, run.id|url and target.kind|namespace|name|pod|"
                "node can be used"
            )
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

    return _TEMPLATE.sub(lambda match: _lookup(match.group(1), scope), text)


def _lookup(expr: str, scope: Mapping[str, Mapping[str, str]]) -> str:
    if not _NAME.match(expr):
        raise TemplateError(f"template {{{{ {expr} }}}} is not allowed")
    kind, _, key = expr.partition(".")
    values = scope.get(kind, {})
    if key not in values:
        what = {"labels": "label", "annotations": "annotation"}.get(kind, f"{kind} field")
        raise TemplateError(f"{{{{ {expr} }}}}: the alert has no {what} {key!r}")
    return values[key]


def render_tree(value: Any, scope: Mapping[str, Mapping[str, str]]) -> Any:
    """``render`` every string in nested dicts and lists; other values pass unchanged."""
    if isinstance(value, str):
        return render(value, scope)
    if isinstance(value, dict):
        return {k: render_tree(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_tree(v, scope) for v in value]
    return value


def scope_of(
    alert: Any, *, run_id: str = "", run_url: str = "", target: Mapping[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """The names a template may use, for one alert (a ``webhook.Alert``), run and target."""
    return {
        "target": dict(target or {}),
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "alert": {
            "fingerprint": str(alert.fingerprint),
            "startsAt": alert.starts_at,
            "status": alert.status,
            "generatorURL": alert.generator_url,
        },
        "run": {"id": run_id, "url": run_url},
    }


# --- contexts ---------------------------------------------------------------------------
class Context(StrEnum):
    """Where a template's result goes, which decides how a value is escaped in it."""

    TEXT = "text"  # substituted as is; the parameter's model validates the result
    PROMQL = "promql"  # a PromQL query; templates only inside quoted label values
    VIGIL_QUERY = "vigil_query"  # a vigil.verify query: PromQL that may use $selector
    PROMQL_SELECTOR = "promql_selector"  # label matchers: {a="b"} or a="b", c="d"
    URL = "url"  # an http(s) URL; templates only in path segments, query and fragment
    MATCHER = "matcher"  # an Alertmanager matcher, name="value"


_KINDS = {
    Context.PROMQL: promql.Kind.QUERY,
    Context.VIGIL_QUERY: promql.Kind.VIGIL_QUERY,
    Context.PROMQL_SELECTOR: promql.Kind.SELECTOR,
}
Renderer = Callable[[Sequence[str]], str]


def split(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The literal text around each ``{{ }}`` (one more than the templates) and the
    names the templates use."""
    literals, names, pos = [], [], 0
    for match in _TEMPLATE.finditer(text):
        literals.append(text[pos : match.start()])
        names.append(match.group(1))
        pos = match.end()
    literals.append(text[pos:])
    return tuple(literals), tuple(names)


# A playbook's templates are compiled when it is loaded (check_as) and again for every
# alert it renders; the renderers are pure, so each is compiled once and kept. A failed
# compile raises and is not kept.
@functools.lru_cache(maxsize=4096)
def _compile(literals: tuple[str, ...], context: Context) -> Renderer:
    """ValueError saying why the template cannot be used in ``context``."""
    if context in _KINDS:
        return promql.QueryTemplate.compile(literals, _KINDS[context]).render
    if len(literals) == 1 and context in (Context.URL, Context.MATCHER):
        # nothing from the alert: the params model (and for a URL the allow-list, when it
        # is called) judges it
        return lambda values: literals[0]
    if context is Context.URL:
        template = urls.UrlTemplate.compile(literals)

        def render_url(values: Sequence[str]) -> str:
            try:
                return template.render(values)
            except urls.UrlError as exc:
                raise TemplateError(str(exc)) from exc

        return render_url
    if context is Context.MATCHER:
        return _compile_matcher(literals)
    return lambda values: placeholders.join(literals, values)


def check_as(text: str, context: Context) -> None:
    """``check``, then refuse a template that cannot be rendered safely in ``context``
    (a PromQL template that is not valid PromQL, a template in a URL's host, ...);
    ValueError with the reason."""
    check(text)
    _compile(split(text)[0], context)


def render_as(text: str, scope: Mapping[str, Mapping[str, str]], context: Context) -> str:
    """``render`` for ``context``: each value escaped for the spot it stands in, and the
    result checked to have the template's structure; TemplateError saying why not."""
    if context is Context.TEXT:
        return render(text, scope)
    literals, names = split(text)
    return _render_in(context, literals, names, [_lookup(name, scope) for name in names])


def _render_in(
    context: Context, literals: tuple[str, ...], names: Sequence[str], values: Sequence[str]
) -> str:
    """``values`` (those of the templates ``names``) rendered between ``literals`` for
    ``context`` (not TEXT); TemplateError saying why they cannot be."""
    if context in _KINDS or context is Context.MATCHER:
        for name, value in zip(names, values, strict=True):
            if not value:  # `pod=""` selects every series (or alert) without a pod label
                raise TemplateError(
                    f"{{{{ {name} }}}} is empty: an empty value would "
                    "match everything that lacks the label; refused"
                )
    try:
        renderer = _compile(literals, context)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc
    return renderer(values)


def render_params(
    value: Any,
    scope: Mapping[str, Mapping[str, str]],
    contexts: Mapping[str, Context],
    path: str = "",
) -> Any:
    """``render_tree`` where the string at each declared path (``query``,
    ``queries[].query``: dict keys joined by dots, ``[]`` for any list item) is rendered
    in its context, every other string as text. TemplateError naming the path."""
    if isinstance(value, str):
        context = contexts.get(path, Context.TEXT)
        if context is Context.TEXT:
            return render(value, scope)
        literals, names = split(value)
        values = [_lookup(name, scope) for name in names]  # says what the alert lacks
        try:
            return _render_in(context, literals, names, values)
        except TemplateError as exc:
            raise TemplateError(f"params.{path}: {exc}") from exc
    if isinstance(value, dict):
        return {
            k: render_params(v, scope, contexts, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [render_params(v, scope, contexts, f"{path}[]") for v in value]
    return value


def param_path(loc: Sequence[str | int]) -> str:
    """A location inside params (``("queries", 0, "query")``) as a declared path
    (``queries[].query``)."""
    out = ""
    for part in loc:
        out += "[]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _compile_matcher(literals: Sequence[str]) -> Renderer:
    """An Alertmanager matcher template: a value inside ``"..."`` is JSON-escaped, one in
    a regex (``=~``, ``!~``) regex-quoted; templates may not name the label or the
    operator. The rendered matcher must parse to the same name and operator and to the
    value the template asked for."""
    quoted: list[bool] = []
    inside = escaped = False
    for i, literal in enumerate(literals):
        for c in literal:
            if escaped:
                escaped = False
            elif inside and c == "\\":
                escaped = True
            elif c == '"':
                inside = not inside
        if i < len(literals) - 1:
            if escaped:
                raise ValueError(f"template #{i + 1} follows a backslash")
            quoted.append(inside)
    base = matchers.parse_matcher(
        placeholders.join(literals, placeholders.placeholders(len(quoted)))
    )
    if placeholders.PATTERN.search(base.name):
        raise ValueError(
            'a template may only stand in the matcher\'s value, e.g. pod="{{ labels.pod }}"'
        )
    regex = base.op in ("=~", "!~")

    def render_matcher(values: Sequence[str]) -> str:
        wanted = [promql.quote_meta(v) if regex else v for v in values]
        parts = []
        for value, is_quoted in zip(wanted, quoted, strict=True):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise TemplateError(f"{value[:60]!r} is not valid Unicode text") from exc
            parts.append(json.dumps(value, ensure_ascii=False)[1:-1] if is_quoted else value)
        text = placeholders.join(literals, parts)
        expected = placeholders.fill(base.value, wanted)
        try:
            got = matchers.parse_matcher(text)
        except ValueError as exc:
            raise TemplateError(f"the rendered matcher does not parse ({exc}); refused") from exc
        if (got.name, got.op, got.value) != (base.name, base.op, expected):
            raise TemplateError(
                "a label value would change the matcher (it does not stay its value); refused"
            )
        return text

    return render_matcher
