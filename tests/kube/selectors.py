"""Label and field selectors as the real server reads them.

``labelSelector`` strings follow k8s.io/apimachinery/pkg/labels ``Parse``: ``k``, ``!k``,
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>1``, ``k<1``, joined by
commas (all must hold). ``!=`` and ``notin`` also match objects without the label.
``fieldSelector`` strings are ``field=v``, ``field==v`` or ``field!=v`` joined by commas, over
the fields each resource supports (:mod:`tests.kube.resources`); others answer 400 like the
real server. :func:`selector_matches` handles the structured ``metav1.LabelSelector``
(matchLabels / matchExpressions) that PodDisruptionBudgets and workloads carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.kube.resources import ResourceType
from tests.kube.status import ApiError, bad_request

_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]")
_QUALIFIED = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if not has:
            return False
        try:
            n = int(value or "")
        except ValueError:
            return False
        bound = int(self.values[0])
        return n > bound if self.op == "gt" else n < bound


def _error(selector: str, why: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {why} (in {selector!r})")


def parse_label_selector(selector: str) -> list[Requirement]:  # noqa: C901 (one grammar, one function)
    """Parse a ``labelSelector`` query value; 400 BadRequest when malformed."""
    s, i, n = selector, 0, len(selector)
    reqs: list[Requirement] = []

    def ws() -> None:
        nonlocal i
        while i < n and s[i] in " \t":
            i += 1

    def word(stop: str) -> str:
        nonlocal i
        start = i
        while i < n and s[i] not in stop:
            i += 1
        return s[start:i].strip()

    while True:
        ws()
        if i >= n:
            if reqs and s.rstrip().endswith(","):
                raise _error(s, "found '', expected: identifier")
            break
        negated = s[i] == "!"
        if negated:
            i += 1
            ws()
        start = i
        while i < n and _KEY_CHARS.match(s[i]):
            i += 1
        key = s[start:i]
        if not key:
            raise _error(s, f"found '{s[i : i + 1]}', expected: identifier")
        if not _QUALIFIED.match(key):
            raise _error(s, f"invalid label key {key!r}")
        ws()
        if negated:
            reqs.append(Requirement(key, "!"))
        elif i >= n or s[i] == ",":
            reqs.append(Requirement(key, "exists"))
        elif s.startswith("==", i) or s.startswith("!=", i) or s[i] == "=":
            op = "!=" if s[i] == "!" else "="
            i += 2 if s.startswith(("==", "!="), i) else 1
            ws()
            value = word(", \t")
            if not LABEL_VALUE.match(value) or len(value) > 63:
                raise _error(s, f"invalid label value: {value!r}")
            reqs.append(Requirement(key, op, (value,)))
        elif s[i] in "<>":
            op = "gt" if s[i] == ">" else "lt"
            i += 1
            ws()
            value = word(", \t")
            if not re.fullmatch(r"-?\d+", value):
                raise _error(
                    s, f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                )
            reqs.append(Requirement(key, op, (value,)))
        else:
            op = word(" \t(")
            if op not in ("in", "notin"):
                raise _error(s, f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
            ws()
            if i >= n or s[i] != "(":
                raise _error(s, "found '', expected: '('")
            i += 1
            inner = word(")")
            if i >= n:
                raise _error(s, "found '', expected: ')'")
            i += 1
            values = tuple(v.strip() for v in inner.split(",")) if inner.strip() else ()
            if not values:
                raise _error(s, "for 'in', 'notin' operators, values set can't be empty")
            reqs.append(Requirement(key, op, values))
        ws()
        if i < n:
            if s[i] != ",":
                raise _error(s, f"found '{s[i]}', expected: ',' or 'end of string'")
            i += 1
    return reqs


def labels_match(reqs: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


# --- field selectors -------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negated: bool
    value: str


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, cur, esc = [], [], False
    for ch in s:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)


def parse_field_selector(selector: str, rt: ResourceType) -> list[FieldRequirement]:
    out: list[FieldRequirement] = []
    for term in _split_unescaped(selector, ","):
        term = term.strip()
        if not term:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        field, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3))
        if field not in rt.fields:
            raise bad_request(f"field label not supported: {field}")
        out.append(FieldRequirement(field, op == "!=", value))
    return out


def field_value(obj: dict[str, Any], field: str) -> str:
    cur: Any = obj
    if field == "source":  # events: source.component
        cur = (obj.get("source") or {}).get("component")
    else:
        for part in field.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return "false" if field in ("spec.unschedulable", "spec.hostNetwork") else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(reqs: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all((field_value(obj, r.field) == r.value) != r.negated for r in reqs)


# --- metav1.LabelSelector ---------------------------------------------------------------


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Structured selector; ``None`` selects nothing, ``{}`` selects everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        has = key in labels
        if op == "In" and not (has and labels[key] in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def selector_string(selector: dict[str, Any] | None) -> str:
    """``metav1.LabelSelectorAsSelector(s).String()``: requirements sorted by key."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for expr in selector.get("matchExpressions") or []:
        key, op = expr["key"], expr["operator"]
        values = ",".join(sorted(expr.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }[op]
        reqs.append((key, text))
    return ",".join(t for _, t in sorted(reqs, key=lambda r: r[0]))
