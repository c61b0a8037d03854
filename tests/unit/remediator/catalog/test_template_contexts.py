"""Each template context escapes for its target (issue 21): PromQL string literals, the
vigil.verify selector, Alertmanager matchers and URLs; a value that would leave its spot
is refused with a TemplateError, and a template that stands where no value may is
refused by ``check_as`` (playbook check)."""

from __future__ import annotations

import promql_parser
import pytest

from remediator.catalog import promql
from remediator.catalog.matchers import parse_matcher
from remediator.catalog.templating import Context, check_as, param_path, render_as, render_params
from remediator.errors import TemplateError

INJECT_DQ = 'x"} == 1 or vector(1) or up{a="'
INJECT_SQ = "x'} == 1 or vector(1) or up{a='"
CRASHLOOP_PRE = (
    'kube_pod_container_status_waiting_reason{namespace="{{ labels.namespace }}", '
    'pod="{{ labels.pod }}", reason="CrashLoopBackOff"} == 1'
)


def scope(**labels: str) -> dict[str, dict[str, str]]:
    return {"labels": labels}


def matcher_value(query: str, name: str) -> str:
    expr = promql_parser.parse(query)
    found: list[str] = []

    def visit(e: object) -> None:
        if isinstance(e, promql_parser.VectorSelector):
            found.extend(m.value for m in e.matchers.matchers if m.name == name)

    promql_parser.walk(expr, visit)
    [value] = found
    return value


# --- PromQL -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        INJECT_DQ,
        INJECT_SQ,
        'a\\"b',
        "back\\slash\\",
        "line\nbreak\r\ttab",
        "quote'single",
        "`tick`",
        "ünïcødé ☃ \u2028",
        "\x00\x7f",
        "\ufffd",
        "$selector",
        "x" * 5000,
    ],
)  # "" is refused (test_redteam.py::test_an_empty_label_value_is_refused_where_...)
def test_a_label_value_stays_the_matchers_value(value: str) -> None:
    query = render_as(CRASHLOOP_PRE, scope(namespace=value, pod="p"), Context.PROMQL)
    assert matcher_value(query, "namespace") == value
    assert matcher_value(query, "pod") == "p"
    assert isinstance(promql_parser.parse(query), promql_parser.BinaryExpr)


def test_the_injection_of_issue_21_is_escaped_not_executed() -> None:
    query = render_as(
        'up{instance="{{ labels.instance }}"} == 1', scope(instance=INJECT_DQ), Context.PROMQL
    )
    assert query == 'up{instance="x\\"} == 1 or vector(1) or up{a=\\""} == 1'
    expr = promql_parser.parse(query)
    assert isinstance(expr, promql_parser.BinaryExpr)
    assert str(expr.op) == "==" and isinstance(expr.lhs, promql_parser.VectorSelector)


def test_single_quoted_literals_escape_their_own_quote() -> None:
    query = render_as(
        "up{instance='{{ labels.instance }}'}", scope(instance=INJECT_SQ), Context.PROMQL
    )
    assert matcher_value(query, "instance") == INJECT_SQ


@pytest.mark.parametrize("value", ["a`b", "a\rb", "a\\b"])
def test_a_backtick_string_refuses_what_it_cannot_hold(value: str) -> None:
    with pytest.raises(TemplateError, match="backtick"):
        render_as("up{instance=`{{ labels.i }}`}", scope(i=value), Context.PROMQL)
    assert (
        matcher_value(render_as("up{i=`{{ labels.i }}`}", scope(i='a"b\n'), Context.PROMQL), "i")
        == 'a"b\n'
    )


def test_a_regex_matcher_matches_the_value_literally() -> None:
    query = render_as('up{pod=~"{{ labels.pod }}-.*"}', scope(pod="web.1(x)|.*"), Context.PROMQL)
    assert matcher_value(query, "pod") == "web\\.1\\(x\\)\\|\\.\\*-.*"


def test_invalid_unicode_is_refused() -> None:
    with pytest.raises(TemplateError, match="not valid Unicode"):
        render_as(CRASHLOOP_PRE, scope(namespace="\ud800", pod="p"), Context.PROMQL)


@pytest.mark.parametrize(
    "template,reason",
    [
        ('up{a="x"} > {{ labels.v }}', "outside a string literal"),
        ("{{ labels.v }}", "outside a string literal"),
        ('up{a="x"} # {{ labels.v }}', "in a comment"),
        ('up{a="x\\{{ labels.v }}"}', "follows a backslash"),
        ('up{a="{{ labels.v }}"', "not valid PromQL"),
        ('sum(up{a="x"}', "not valid PromQL"),
        ('up{a="x"} +', "not valid PromQL"),
    ],
)
def test_check_refuses_query_templates_that_cannot_be_rendered_safely(
    template: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        check_as(template, Context.PROMQL)
    with pytest.raises(TemplateError, match=reason):
        render_as(template, scope(v="1"), Context.PROMQL)


def test_structure_is_compared_on_the_tree_not_the_text() -> None:
    template = promql.QueryTemplate.compile(['up{a="', '"} == 1'], promql.Kind.QUERY)
    assert template.render(["b"]) == 'up{a="b"} == 1'
    # a raw string hides nothing: the value is compared after parsing
    raw = promql.QueryTemplate.compile(["up{a=`", "`}"], promql.Kind.QUERY)
    with pytest.raises(TemplateError):
        raw.render(["`} or vector(1) or up{a=`"])


def test_vigil_queries_keep_selector_and_refuse_it_in_a_value() -> None:
    text = 'sum(rate(x{code=~"5..", a="{{ labels.a }}", $selector}[2m]))'
    check_as(text, Context.VIGIL_QUERY)
    assert (
        render_as(text, scope(a='q"'), Context.VIGIL_QUERY)
        == 'sum(rate(x{code=~"5..", a="q\\"", $selector}[2m]))'
    )
    with pytest.raises(TemplateError, match=r"\$selector"):
        render_as(text, scope(a="$selector"), Context.VIGIL_QUERY)
    with pytest.raises(ValueError, match="not valid PromQL"):
        check_as(text, Context.PROMQL)  # $selector is the detector's, not PromQL


@pytest.mark.parametrize(
    "template", ['namespace="{{ labels.ns }}", job="x"', '{namespace="{{ labels.ns }}", job="x"}']
)
def test_a_selector_keeps_each_value_in_its_matcher(template: str) -> None:
    out = render_as(template, scope(ns='shop", job=~".*'), Context.PROMQL_SELECTOR)
    inner = out.strip()
    expr = promql_parser.parse(inner if inner.startswith("{") else "{" + inner + "}")
    assert isinstance(expr, promql_parser.VectorSelector)
    assert [(m.name, m.value) for m in expr.matchers.matchers] == [
        ("namespace", 'shop", job=~".*'),
        ("job", "x"),
    ]


def test_a_selector_must_be_only_matchers() -> None:
    with pytest.raises(ValueError, match="not valid selector"):
        check_as('{a="{{ labels.a }}"} or vector(1)', Context.PROMQL_SELECTOR)
    with pytest.raises(ValueError, match="list of label matchers"):
        check_as('{a="{{ labels.a }}"} or {b="c"}', Context.PROMQL_SELECTOR)


# --- Alertmanager matchers -----------------------------------------------------------
@pytest.mark.parametrize("value", ['x", alertname=~".*', "a\\b", "line\nbreak", "ü ☃"])
def test_a_matcher_value_stays_its_value(value: str) -> None:
    out = render_as('instance="{{ labels.i }}"', scope(i=value), Context.MATCHER)
    m = parse_matcher(out)
    assert (m.name, m.op, m.value) == ("instance", "=", value)


def test_a_regex_matcher_value_is_regex_quoted() -> None:
    m = parse_matcher(render_as('pod=~"{{ labels.p }}-.*"', scope(p=".*"), Context.MATCHER))
    assert m.value == "\\.\\*-.*" and m.matches({"pod": ".*-1"}) and not m.matches({"pod": "x-1"})


def test_an_unquoted_matcher_value_that_would_change_is_refused() -> None:
    assert render_as("pod={{ labels.p }}", scope(p="web-1"), Context.MATCHER) == "pod=web-1"
    with pytest.raises(TemplateError):
        render_as("pod={{ labels.p }}", scope(p='"x" '), Context.MATCHER)


def test_a_template_may_not_name_the_label_of_a_matcher() -> None:
    with pytest.raises(ValueError, match="only stand in the matcher's value"):
        check_as('{{ labels.name }}="x"', Context.MATCHER)


# --- URLs and params ----------------------------------------------------------------
def test_a_url_value_is_one_path_segment() -> None:
    url = "http://127.0.0.1:8080/hook/services/{{ labels.service }}/status"
    assert (
        render_as(url, scope(service="a/b"), Context.URL)
        == "http://127.0.0.1:8080/hook/services/a%2Fb/status"
    )
    for hostile in ("../../../admin/users/delete?all=true&x=", "%2e%2e", ".."):
        with pytest.raises(TemplateError):
            render_as(url, scope(service=hostile), Context.URL)
    with pytest.raises(ValueError, match="host"):
        check_as("https://{{ labels.host }}/x", Context.URL)


def test_params_render_each_declared_path_in_its_context() -> None:
    params = {
        "queries": [{"name": "{{ labels.m }}", "query": 'max(x{a="{{ labels.m }}"})'}],
        "selector": 'ns="{{ labels.m }}"',
        "note": "{{ labels.m }}",
    }
    contexts = {"queries[].query": Context.VIGIL_QUERY, "selector": Context.PROMQL_SELECTOR}
    out = render_params(params, scope(m='a"b'), contexts)
    assert out == {
        "queries": [{"name": 'a"b', "query": 'max(x{a="a\\"b"})'}],
        "selector": 'ns="a\\"b"',
        "note": 'a"b',
    }
    with pytest.raises(TemplateError, match=r"^params\.queries\[\]\.query: "):
        render_params(params, scope(m="$selector"), contexts)
    assert param_path(("queries", 0, "query")) == "queries[].query"
    assert param_path(("matchers", 2)) == "matchers[]"


@pytest.mark.parametrize(
    "params, contexts",
    [
        ({"matchers": ['pod="{{ labels.pod }}"']}, {"matchers[]": Context.MATCHER}),
        ({"query": 'up{pod="{{ labels.pod }}"} == 0'}, {"query": Context.PROMQL}),
    ],
)
def test_step_params_refuse_an_empty_value_as_render_as_does(params, contexts) -> None:
    # alertmanager.silence with pod="" would silence every alert that has no pod label
    with pytest.raises(TemplateError, match=r"^params\..*is empty"):
        render_params(params, scope(pod=""), contexts)
    assert "web-1" in str(render_params(params, scope(pod="web-1"), contexts))


@pytest.mark.parametrize(
    "template,reason",
    [
        ("(" * 50_000 + 'up{a="{{ labels.v }}"}' + ")" * 50_000, "nested more than 100"),
        ('up{a="{{ labels.v }}"}' + " + x" * 5_000, "longer than 4000 characters"),
        ('up{a="{{ labels.v }}"}' + "+x" * 1_900, "too many operators"),
    ],
)
def test_queries_that_would_crash_the_parser_are_refused_first(template: str, reason: str) -> None:
    # the Rust parser overflows its stack (and kills the process) on these
    with pytest.raises(ValueError, match=reason):
        check_as(template, Context.PROMQL)


def test_long_values_inside_literals_do_not_count_toward_the_bounds() -> None:
    out = render_as('up{a="{{ labels.v }}"}', scope(v="(" * 100_000), Context.PROMQL)
    assert matcher_value(out, "a") == "(" * 100_000


def test_vigil_verify_steps_stay_within_what_the_detector_accepts() -> None:
    """The detector refuses step_s below 5 s and windows over 11,000 points with a 400;
    a playbook asking for either is refused when it loads, not in the middle of a run."""
    import pydantic

    from remediator.actions.basic import VerifyParams

    VerifyParams(step_s=60, baseline_s=7 * 86400)  # 10,081 points: accepted
    with pytest.raises(pydantic.ValidationError, match="step_s"):
        VerifyParams(step_s=1)
    with pytest.raises(pydantic.ValidationError, match="11000 points"):
        VerifyParams(step_s=5, baseline_s=7 * 86400)
