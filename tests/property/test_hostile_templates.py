"""Hostile label values against every template of every shipped playbook and every
template context (issue 21): nothing rendered ever leaves its context.

For each value either the render is refused with a TemplateError, or
- PromQL keeps the template's operators, functions, selectors and matcher names, and a
  matcher whose value was one template holds exactly the label value (a regex matcher one
  that matches exactly it);
- a URL keeps the template's scheme, host, port and literal path prefix, and each path
  segment, query value or fragment that was one template decodes back to the value;
- an Alertmanager matcher keeps its name and operator and its value is the label value.

The oracle here parses the output independently of ``remediator.catalog.promql``'s own check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import promql_parser
from hypothesis import given
from hypothesis import strategies as st

from remediator.app import build_registry
from remediator.catalog import urls
from remediator.catalog.loader import load_catalog, strings_in
from remediator.catalog.matchers import parse_matcher
from remediator.catalog.templating import Context, param_path, render_as, split
from remediator.errors import TemplateError

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = build_registry()
CATALOG = load_catalog([ROOT / "playbooks"], REGISTRY)
ONE = re.compile(r"^\{\{\s*(labels|annotations|target|alert|run)\.(\w+)\s*\}\}$")

FRAGMENTS = (
    '"',
    "'",
    "`",
    "\\",
    "\\\\",
    "\n",
    "\r",
    "\t",
    "\x00",
    "../",
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    "%252e",
    "%2F",
    "/",
    "?",
    "#",
    "&",
    "=",
    "+",
    "@",
    ":",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "|",
    ".*",
    "$selector",
    '"} or vector(1) or up{a="',
    "'}",
    " or ",
    "# ",
    "ü",
    "☃",
    "\u2028",
    "\ufffd",
    "\U0001f600",
    "\ud800",
    "%",
    "%zz",
)
hostile = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=12).map("".join),
    st.builds(lambda s, n: s * n, st.sampled_from((*FRAGMENTS, "a")), st.integers(500, 5000)),
)


def shipped_templates() -> list[tuple[str, str, Context]]:
    """(where, template, context) of every string with a template in playbooks/."""
    out = []
    for entry in CATALOG.entries:
        spec = entry.playbook.spec
        steps = spec.steps + (spec.undo if isinstance(spec.undo, tuple) else ())
        for step in steps:
            action = REGISTRY.get(step.action)
            assert action is not None
            for loc, text in strings_in(step.params):
                if "{{" in text:
                    out.append(
                        (
                            f"{entry.playbook.name}/{step.name}/{param_path(loc)}",
                            text,
                            action.context(param_path(loc)),
                        )
                    )
        for pre in spec.guards.preconditions:
            out.append((f"{entry.playbook.name}/precondition", pre.query, Context.PROMQL))
        for check in spec.verify:
            out.append((f"{entry.playbook.name}/verify", check.query, Context.PROMQL))
    return out


TEMPLATES = shipped_templates()


def test_every_shipped_playbook_loads_and_has_query_templates() -> None:
    assert CATALOG.ok, CATALOG.problems
    assert len(CATALOG.entries) == len(list((ROOT / "playbooks").glob("*.yaml")))
    contexts = {c for _, _, c in TEMPLATES}
    assert {Context.PROMQL, Context.VIGIL_QUERY, Context.TEXT} <= contexts


# --- the oracle ---------------------------------------------------------------------
def _nodes(query: str) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str]]]:
    """Everything but string values (node kinds, ops, functions, names), and the
    matchers (name, op, value)."""
    structure: list[tuple[Any, ...]] = []
    matchers: list[tuple[str, str, str]] = []

    def visit(e: Any) -> None:
        kind = type(e).__name__
        if isinstance(e, promql_parser.VectorSelector):
            groups = [e.matchers.matchers, *e.matchers.or_matchers]
            structure.append(
                (kind, e.name, len(groups), tuple((m.name, str(m.op)) for g in groups for m in g))
            )
            matchers.extend((m.name, str(m.op), m.value) for g in groups for m in g)
        elif isinstance(e, promql_parser.Call):
            structure.append((kind, e.func.name, len(e.args)))
        elif isinstance(e, promql_parser.BinaryExpr | promql_parser.AggregateExpr):
            structure.append((kind, str(e.op), str(e.modifier)))
        elif isinstance(e, promql_parser.NumberLiteral):
            structure.append((kind, repr(e.val)))
        else:
            structure.append((kind,))

    promql_parser.walk(promql_parser.parse(query), visit)
    return structure, matchers


def _parse_query(text: str, context: Context) -> tuple[list[Any], list[tuple[str, str, str]]]:
    if context is Context.VIGIL_QUERY:
        text = text.replace("$selector", 'vigil_selector="x"')  # never inside a value
    if context is Context.PROMQL_SELECTOR:
        inner = text.strip()
        text = inner if inner.startswith("{") else "{" + inner + "}"
    return _nodes(text)


def _is_regex(op: str) -> bool:
    return op in ("MatchOp.Re", "MatchOp.NotRe", "=~", "!~")


def assert_query_kept(template: str, out: str, context: Context, values: dict[str, str]) -> None:
    literals, names = split(template)
    placeholder = "".join(
        literals[0] + "".join(f"vigilvalue{i}" + lit for i, lit in enumerate(literals[1:]))
    )
    want, want_m = _parse_query(placeholder, context)
    got, got_m = _parse_query(out, context)
    assert got == want, (template, out)
    assert len(got_m) == len(want_m)
    for (name, op, tvalue), (gname, gop, gvalue) in zip(want_m, got_m, strict=True):
        assert (gname, gop) == (name, op)
        m = re.fullmatch(r"vigilvalue(\d+)", tvalue)
        if m is None:
            if "vigilvalue" not in tvalue:
                assert gvalue == tvalue
            continue
        raw = values[names[int(m.group(1))].split(".")[1]]
        if _is_regex(op):
            assert re.fullmatch(gvalue, raw, re.S), (raw, gvalue)
        else:
            assert gvalue == raw
    if context is Context.VIGIL_QUERY:  # the detector replaces $selector by plain text
        assert out.count("$selector") == template.count("$selector")


def assert_url_kept(template: str, out: str, values: dict[str, str]) -> None:
    literals, names = split(template)
    base = urls.parse(
        "".join(literals[0] + "".join(f"vigilvalue{i}" + lit for i, lit in enumerate(literals[1:])))
    )
    got = urls.parse(out)
    assert (got.scheme, got.host, got.port) == (base.scheme, base.host, base.port)
    fixed = urls.parse(literals[0].rsplit("/", 1)[0] + "/") if "?" not in literals[0] else base
    assert urls.is_under(got, fixed)
    assert len(got.segments) == len(base.segments)
    for tseg, gseg in zip(base.segments, got.segments, strict=True):
        m = re.fullmatch(r"vigilvalue(\d+)", tseg)
        if m is not None:
            assert unquote(gseg) == values[names[int(m.group(1))].split(".")[1]]
    if base.query is not None:
        assert got.query is not None
        for tpart, gpart in zip(base.query.split("&"), got.query.split("&"), strict=True):
            _tkey, _, tval = tpart.partition("=")
            _gkey, _, gval = gpart.partition("=")
            m = re.fullmatch(r"vigilvalue(\d+)", tval)
            if m is not None:
                assert unquote(gval) == values[names[int(m.group(1))].split(".")[1]]


def assert_matcher_kept(template: str, out: str, values: dict[str, str]) -> None:
    literals, names = split(template)
    base = parse_matcher(
        "".join(literals[0] + "".join(f"vigilvalue{i}" + lit for i, lit in enumerate(literals[1:])))
    )
    got = parse_matcher(out)
    assert (got.name, got.op) == (base.name, base.op)
    m = re.fullmatch(r"vigilvalue(\d+)", base.value)
    if m is not None:
        raw = values[names[int(m.group(1))].split(".")[1]]
        if base.op in ("=~", "!~"):
            assert re.fullmatch(got.value, raw, re.S)
        else:
            assert got.value == raw


def check_render(template: str, context: Context, values: dict[str, str]) -> str | None:
    """Render with every name set to its drawn value; None when refused."""
    names = {n.split(".")[1] for n in split(template)[1]}
    scope = {
        kind: {n: values[n] for n in names}
        for kind in ("labels", "annotations", "target", "alert", "run")
    }
    try:
        out = render_as(template, scope, context)
    except TemplateError:
        return None
    if context in (Context.PROMQL, Context.VIGIL_QUERY, Context.PROMQL_SELECTOR):
        assert_query_kept(template, out, context, values)
    elif context is Context.URL:
        assert_url_kept(template, out, values)
    elif context is Context.MATCHER:
        assert_matcher_kept(template, out, values)
    return out


def _drawn(draw: Callable[[st.SearchStrategy[str]], str], names: set[str]) -> dict[str, str]:
    return {n: draw(hostile) for n in sorted(names)}


ALL_NAMES = {n.split(".")[1] for _, t, _ in TEMPLATES for n in split(t)[1]}


@given(st.data())
def test_no_shipped_template_lets_a_value_leave_its_context(data: st.DataObject) -> None:
    values = _drawn(data.draw, ALL_NAMES)
    for _, template, context in TEMPLATES:
        check_render(template, context, values)


# --- every context, templates beyond the shipped ones ---------------------------------
CONTEXT_TEMPLATES = [
    (Context.PROMQL, 'up{a="{{ labels.v }}", b="fixed"} == 1'),
    (Context.PROMQL, "up{a='{{ labels.v }}'} or on(a) down{b=\"x\"}"),
    (Context.PROMQL, "up{a=`{{ labels.v }}`}"),
    (Context.PROMQL, 'sum by (a) (rate(up{a=~"{{ labels.v }}"}[5m])) > 0'),
    (Context.PROMQL, 'up{a!~"{{ labels.v }}"} # a comment "with quotes'),
    (Context.PROMQL, 'label_replace(up, "dst", "{{ labels.v }}", "src", "(.*)")'),
    (Context.PROMQL, 'max({__name__="{{ labels.v }}", a="{{ labels.w }}"})'),
    (Context.VIGIL_QUERY, 'sum(rate(x{code=~"5..", a="{{ labels.v }}", $selector}[2m]))'),
    (Context.PROMQL_SELECTOR, 'namespace="{{ labels.v }}", job="{{ labels.w }}"'),
    (Context.PROMQL_SELECTOR, '{namespace=~"{{ labels.v }}"}'),
    (Context.URL, "http://127.0.0.1:8080/hook/services/{{ labels.v }}/status"),
    (Context.URL, "https://hooks.example/x/{{ labels.v }}?q={{ labels.w }}&r=1"),
    (Context.URL, "https://hooks.example/x/{{ labels.v }}.json#{{ labels.w }}"),
    (Context.MATCHER, 'instance="{{ labels.v }}"'),
    (Context.MATCHER, 'instance=~"{{ labels.v }}"'),
    (Context.MATCHER, "instance!={{ labels.v }}"),
]


@given(st.sampled_from(CONTEXT_TEMPLATES), hostile, hostile)
def test_no_context_lets_a_value_leave_it(case: tuple[Context, str], v: str, w: str) -> None:
    context, template = case
    check_render(template, context, {"v": v, "w": w})


@given(
    st.sampled_from(CONTEXT_TEMPLATES),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="`\r\ufffd"),
        min_size=1,
        max_size=30,
    ),
)
def test_ordinary_values_are_escaped_not_refused(case: tuple[Context, str], v: str) -> None:
    """Refusal is for what cannot be written safely: a PromQL literal or matcher takes
    any text (a backtick string anything without a backtick, backslash or CR; a selector anything
    without U+FFFD). Not empty: a selector whose only matcher matches "" is not PromQL."""
    context, template = case
    if context in (Context.URL,) or (context is Context.MATCHER and '"' not in template):
        return  # URL path segments and unquoted matcher values refuse some values
    if "`" in template and "\\" in v:
        return  # promql-parser (unlike Go) reads escapes in a raw string: refused there
    assert check_render(template, context, {"v": v, "w": "w"}) is not None
