"""``vigil-remediator schema``: each step's params are chosen by its action, from the
registry's own params models, so an editor completes them and flags a wrong one; every
shipped playbook validates; ``check`` reports every problem of a file in one pass and
exits 0 / 1 / 2."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from remediator.__main__ import main
from remediator.actions.registry import ActionRegistry, ActionSpec
from remediator.app import build_registry
from remediator.catalog.schema import SCHEMA_ID, playbook_schema

ROOT = Path(__file__).resolve().parents[4]
SHIPPED = sorted((ROOT / "playbooks").glob("*.yaml"))
VALID = sorted((ROOT / "tests/fixtures/playbooks/valid").glob("*.yaml"))


def _spec(registry: ActionRegistry, name: str) -> ActionSpec:
    spec = registry.get(name)
    assert spec is not None, name
    return spec


@pytest.fixture(scope="module")
def schema():
    doc = playbook_schema(build_registry())
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def scale_step(**params):
    return {
        "apiVersion": "vigil/v1",
        "kind": "Playbook",
        "metadata": {"name": "x"},
        "spec": {
            "match": {"labels": {"alertname": "A"}},
            "steps": [{"name": "s", "action": "kubernetes.scale", "params": params}],
        },
    }


def messages(validator, doc):
    return sorted(e.message for e in validator.iter_errors(doc))


@pytest.mark.parametrize("path", SHIPPED + VALID, ids=lambda p: p.name)
def test_every_shipped_and_valid_playbook_matches_the_schema(validator, path):
    assert SHIPPED, "no shipped playbooks found"
    assert messages(validator, yaml.safe_load(path.read_text())) == []


def test_a_wrong_param_is_refused_by_the_params_of_its_action(validator):
    ok = scale_step(namespace="shop", name="web", replicas=3)
    assert messages(validator, ok) == []
    assert messages(
        validator, scale_step(namespace="shop", name="web", replicas=3, colour="red")
    ) == ["Additional properties are not allowed ('colour' was unexpected)"]
    assert messages(validator, scale_step(namespace="shop", name="web", replicas=5000))
    assert messages(validator, scale_step(namespace="shop", replicas=3)) == [
        "'name' is a required property"
    ]
    # a template may stand for any value; its type is checked once rendered
    assert (
        messages(
            validator,
            scale_step(
                namespace="{{ labels.namespace }}",
                name="{{ labels.deployment }}",
                replicas="{{ labels.replicas }}",
            ),
        )
        == []
    )
    assert messages(validator, scale_step(namespace="shop", name="web", replicas="many"))
    # the same params under another action are judged by that action's model
    doc = scale_step(namespace="shop", name="web", replicas=3)
    doc["spec"]["steps"][0]["action"] = "alertmanager.silence"
    assert "'matchers' is a required property" in messages(validator, doc)
    doc["spec"]["steps"][0]["action"] = "kubernetes.explode"
    assert messages(validator, doc)


def test_the_schema_describes_every_action_with_its_defaults(schema):
    assert schema["$id"] == SCHEMA_ID and schema["$schema"].endswith("2020-12/schema")
    registry = build_registry()
    action = schema["$defs"]["Step"]["properties"]["action"]
    assert [c["const"] for c in action["oneOf"]] == sorted(registry.names())
    silence = next(c for c in action["oneOf"] if c["const"] == "alertmanager.silence")
    assert "undone by alertmanager.expire_silence" in silence["description"]
    conditions = schema["$defs"]["Step"]["allOf"]
    assert len(conditions) == len(registry.names())
    for cond in conditions:
        name = cond["if"]["properties"]["action"]["const"]
        ref = cond["then"]["properties"]["params"]["$ref"]
        assert ref == f"#/$defs/params.{name}"
        target = schema["$defs"][f"params.{name}"]["$ref"].rsplit("/", 1)[1]
        spec = registry.get(name)
        assert spec is not None
        assert set(schema["$defs"][target].get("properties", {})) == {
            f.alias or key for key, f in spec.params.model_fields.items()
        }  # YAML's names
    props = schema["$defs"]["SilenceParams"]["properties"]
    assert props["duration_s"]["default"] == 3600.0
    assert props["matchers"]["description"]
    assert schema["$defs"]["Spec"]["properties"]["approvers"]["description"]


def test_schema_command_prints_it(capsys, schema):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(schema))


def test_check_reports_every_problem_of_a_file_in_one_pass(tmp_path, capsys):
    (tmp_path / "two-kinds.yaml").write_text(
        "apiVersion: vigil/v1\nkind: Playbook\nmetadata: {name: two-kinds}\nspec:\n"
        "  match: {labels: {alertname: A}}\n  mode: sometimes\n  steps:\n"
        "    - {name: s, action: kubernetes.scale, params: {namespace: shop, name: web, "
        "replicas: lots}}\n    - {name: t, action: kubernetes.explode}\n"
    )
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    source = tmp_path / "two-kinds.yaml"
    assert (
        err[0] == f"{source}:6: spec.mode: Input should be 'dryRun', 'shadow', 'approval' or 'auto'"
    )
    assert (
        err[1] == f"{source}:8: spec.steps[0].params.replicas: Input should be a valid "
        "integer, unable to parse string as an integer"
    )
    assert err[2].startswith(
        f"{source}:9: spec.steps[1].action: unknown action "
        "'kubernetes.explode'; known: alertmanager.escalate"
    )
    assert len(err) == 3


def test_check_exit_codes(tmp_path, capsys):
    assert main(["check", str(ROOT / "playbooks")]) == 0
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.endswith(
        f"vigil-remediator check: {tmp_path / 'missing'}: no such file or directory\n"
    )
    with pytest.raises(SystemExit) as usage:
        main(["check"])
    assert usage.value.code == 2
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: vigil/v1\nkind: Playbook\n"
        "metadata: {name: bad}\nspec:\n"
        "  match: {labels: {alertname: A}}\n"
        "  guards: {rate: 5}\n  steps: []\n"
    )
    assert main(["check", str(tmp_path / "bad.yaml")]) == 1
    err = capsys.readouterr().err
    assert "spec.guards.rate: Input should be a mapping (key: value)" in err
    assert "RateLimit" not in err and "tuple" not in err and "Value error" not in err


def test_every_param_of_every_action_is_described(schema):
    """An editor shows each param's description on hover: none may be missing."""
    registry = build_registry()
    missing = [
        f"{name}.{key}"
        for name in registry.names()
        for key, field in _spec(registry, name).params.model_fields.items()
        if not field.description
    ]
    assert missing == []
    silence = schema["$defs"]["SilenceParams"]["properties"]
    assert silence["comment"]["description"] == "shown in Alertmanager beside the silence"
