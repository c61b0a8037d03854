"""Parameter templates: only names, substituted as plain text, never evaluated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.catalog.templating import check, check_tree, render, render_tree, scope_of
from remediator.errors import TemplateError
from remediator.webhook import alert_from_json

ALLOWED = (
    "only labels.<name>, annotations.<name>, alert.fingerprint|startsAt|status|"
    "generatorURL, run.id|url and target.kind|namespace|name|pod|node can be used"
)
SCOPE = {
    "labels": {"pod": "web-1", "namespace": "prod", "empty": ""},
    "annotations": {"summary": "pod web-1 is stuck"},
    "alert": {
        "fingerprint": "abc",
        "startsAt": "2026-11-27T10:00:00Z",
        "status": "firing",
        "generatorURL": "http://prom/graph",
    },
    "run": {"id": "r-1", "url": "http://vigil/api/v1/runs/r-1"},
}


# --- check --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "",
        "no template at all",
        "{{ labels.pod }}",
        "{{labels.pod}}",
        "{{   labels.pod   }}",
        "{{ labels._private_1 }}",
        "{{ annotations.summary }}",
        "{{ alert.fingerprint }}",
        "{{ alert.startsAt }}",
        "{{ alert.status }}",
        "{{ alert.generatorURL }}",
        "{{ run.id }}",
        "{{ run.url }}",
        "{{ labels.namespace }}/{{ labels.pod }}",
        "a { single } brace",
        'up{job="x"}',
        "rate(x[5m])",
    ],
)
def test_check_accepts_names_and_plain_text(text: str) -> None:
    check(text)


@pytest.mark.parametrize(
    "text,expr",
    [
        ("{{ alert.labels }}", "alert.labels"),
        ("{{ __import__ }}", "__import__"),
        ("x {{ __import__('os').system('id') }}", "__import__('os').system('id')"),
        ("{{ labels }}", "labels"),
        ("{{ labels.pod | upper }}", "labels.pod | upper"),
        ("{{ labels.pod.__class__ }}", "labels.pod.__class__"),
        ("{{ labels['pod'] }}", "labels['pod']"),
        ("{{ labels.1pod }}", "labels.1pod"),
        ("{{ run.token }}", "run.token"),
        ("{{ alert.startsat }}", "alert.startsat"),
        ("{{ env.HOME }}", "env.HOME"),
        ("{{ }}", ""),
        ("{{ labels.pod }} then {{ 1 + 1 }}", "1 + 1"),
    ],
)
def test_check_refuses_anything_but_a_name(text: str, expr: str) -> None:
    with pytest.raises(ValueError) as info:
        check(text)
    assert str(info.value) == f"template {{{{ {expr} }}}}: {ALLOWED}"


@pytest.mark.parametrize(
    "text",
    [
        "{{ labels.pod }",
        "{ labels.pod }}",
        "{{ labels.pod",
        "labels.pod }}",
        "{{ labels.pod }} }}",
        "{{ {{ labels.pod }} }}",
        "a {{ b",
    ],
)
def test_check_refuses_unbalanced_braces(text: str) -> None:
    with pytest.raises(ValueError) as info:
        check(text)
    assert str(info.value) == f"template {text!r}: unbalanced {{{{ }}}}"


def test_check_tree_looks_into_nested_dicts_and_lists() -> None:
    check_tree({"a": ["{{ labels.pod }}", {"b": ("{{ run.id }}", 3, None, True)}], "n": 1.5})
    with pytest.raises(ValueError, match=r"template \{\{ alert\.labels \}\}"):
        check_tree({"a": [1, {"b": ["ok", "{{ alert.labels }}"]}]})
    with pytest.raises(ValueError, match="unbalanced"):
        check_tree(("fine", ["{{ labels.pod"]))


# --- render -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,out",
    [
        ("{{ labels.pod }}", "web-1"),
        ("{{labels.pod}}", "web-1"),
        ("{{ labels.namespace }}/{{ labels.pod }}", "prod/web-1"),
        ("[{{ labels.empty }}]", "[]"),
        ("{{ annotations.summary }}", "pod web-1 is stuck"),
        (
            "{{ alert.fingerprint }} {{ alert.status }} {{ alert.startsAt }}",
            "abc firing 2026-11-27T10:00:00Z",
        ),
        ("see {{ run.url }} ({{ run.id }})", "see http://vigil/api/v1/runs/r-1 (r-1)"),
        ('up{pod="{{ labels.pod }}"} == 1', 'up{pod="web-1"} == 1'),
        ("no template", "no template"),
    ],
)
def test_render_substitutes_names(text: str, out: str) -> None:
    assert render(text, SCOPE) == out


@pytest.mark.parametrize(
    "text,message",
    [
        ("{{ labels.node }}", "{{ labels.node }}: the alert has no label 'node'"),
        ("{{ labels.__class__ }}", "{{ labels.__class__ }}: the alert has no label '__class__'"),
        (
            "x {{ annotations.runbook }}",
            "{{ annotations.runbook }}: the alert has no annotation 'runbook'",
        ),
        ("{{ alert.status }}", "{{ alert.status }}: the alert has no alert field 'status'"),
        ("{{ run.id }}", "{{ run.id }}: the alert has no run field 'id'"),
        ("{{ labels.pod | upper }}", "template {{ labels.pod | upper }} is not allowed"),
        ("{{ __import__ }}", "template {{ __import__ }} is not allowed"),
    ],
)
def test_render_errors_say_what_the_alert_lacks(text: str, message: str) -> None:
    scope = {"labels": {"pod": "web-1"}, "annotations": {}}
    with pytest.raises(TemplateError) as info:
        render(text, scope)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "value",
    [
        "{{ labels.namespace }}",  # a value that looks like a template is not rendered again
        "{{ __import__('os').system('id') }}",
        "$(rm -rf /); `id` && echo ${HOME} | tee /tmp/x > /dev/null; exit 1",
        "it's \"quoted\" and 'single'",
        r"back\slash \1 \g<0> \n",
        "{ {} }} {{",
        "line\nbreak\ttab\x00nul",
        "ünïcødé ☃",
    ],
)
def test_values_pass_through_literally(value: str) -> None:
    scope = {"labels": {"v": value, "namespace": "prod"}}
    assert render("{{ labels.v }}", scope) == value
    assert render("a={{ labels.v }};b={{ labels.v }}", scope) == f"a={value};b={value}"
    assert render_tree({"cmd": ["{{ labels.v }}"]}, scope) == {"cmd": [value]}


@given(st.text())
def test_any_label_value_renders_to_itself(value: str) -> None:
    assert render("{{ labels.v }}", {"labels": {"v": value}}) == value


def test_render_tree_renders_every_string_in_nested_structures() -> None:
    params = {
        "url": "https://runbooks.example/{{ labels.namespace }}",
        "json": {
            "pod": "{{ labels.pod }}",
            "count": 3,
            "ratio": 0.5,
            "dry": False,
            "none": None,
            "tags": ["{{ run.id }}", "fixed", 7, {"deep": "{{ labels.pod }}"}],
        },
        "pair": ("{{ alert.status }}", 1),
        "{{ labels.pod }}": "keys are not rendered",
    }
    assert render_tree(params, SCOPE) == {
        "url": "https://runbooks.example/prod",
        "json": {
            "pod": "web-1",
            "count": 3,
            "ratio": 0.5,
            "dry": False,
            "none": None,
            "tags": ["r-1", "fixed", 7, {"deep": "web-1"}],
        },
        "pair": ["firing", 1],
        "{{ labels.pod }}": "keys are not rendered",
    }
    assert params["json"]["pod"] == "{{ labels.pod }}"  # type: ignore[index]  # not mutated


@pytest.mark.parametrize("value", [3, 2.5, True, None])
def test_render_tree_passes_other_values_unchanged(value: object) -> None:
    assert render_tree(value, SCOPE) is value


def test_render_tree_error_names_what_is_missing() -> None:
    with pytest.raises(TemplateError) as info:
        render_tree({"a": [{"b": "{{ labels.node }}"}]}, SCOPE)
    assert str(info.value) == "{{ labels.node }}: the alert has no label 'node'"


def test_scope_of_an_alert() -> None:
    alert = alert_from_json(
        {
            "status": "firing",
            "labels": {"alertname": "X", "pod": "web-1"},
            "annotations": {"summary": "s"},
            "startsAt": "2026-11-27T10:00:00Z",
            "generatorURL": "http://prom/g",
            "fingerprint": "fp1",
        }
    )
    assert scope_of(alert, run_id="r", run_url="http://v/r") == {
        "target": {},
        "labels": {"alertname": "X", "pod": "web-1"},
        "annotations": {"summary": "s"},
        "alert": {
            "fingerprint": "fp1",
            "startsAt": "2026-11-27T10:00:00Z",
            "status": "firing",
            "generatorURL": "http://prom/g",
        },
        "run": {"id": "r", "url": "http://v/r"},
    }
    assert render("{{ alert.fingerprint }}:{{ run.id }}", scope_of(alert)) == "fp1:"
    target = {"kind": "deployment", "namespace": "shop", "name": "web"}
    assert (
        render("{{ target.kind }}/{{ target.name }}", scope_of(alert, target=target))
        == "deployment/web"
    )
