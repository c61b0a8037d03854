"""The double's cached validation agrees with ``kubernetes_validate.validate`` (strict) and
sorts errors the way kube-apiserver reports them."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from tests.kube.schema import check, kind_schema, prune_unknown, schema_version

pytestmark = pytest.mark.kube
V = schema_version("1.32")

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        },
    },
}


def variant(path: list[str | int], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(DEPLOYMENT)
    cur: Any = obj
    for p in path[:-1]:
        cur = cur[p]
    if value is None:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return obj


CASES = [
    ("valid", DEPLOYMENT),
    ("unknown", variant(["spec", "bogus"], 1)),
    ("type", variant(["spec", "replicas"], "three")),
    ("required", variant(["spec", "selector"], None)),
    ("nested unknown", variant(["spec", "template", "spec", "containers", 0, "imagee"], "x")),
]


@pytest.mark.parametrize("label,obj", CASES, ids=[c[0] for c in CASES])
def test_cached_validation_agrees_with_kubernetes_validate(label: str, obj: dict[str, Any]) -> None:
    errors = check(V, obj)
    found = bool(errors.unknown or errors.type_errors or errors.fields)
    try:
        kubernetes_validate.validate(obj, "1.32", strict=True)
        upstream = False
    except kubernetes_validate.ValidationError:
        upstream = True
    assert found is upstream is (label != "valid")


def test_errors_are_sorted_into_decode_and_field_errors() -> None:
    assert check(V, CASES[1][1]).unknown == ["spec.bogus"]
    assert check(V, CASES[4][1]).unknown == ["spec.template.spec.containers[0].imagee"]
    assert check(V, CASES[2][1]).type_errors[0].startswith("json: cannot unmarshal string")
    [required] = check(V, CASES[3][1]).fields
    assert (required.field, required.reason) == ("spec.selector", "FieldValueRequired")


def test_pruning_drops_only_unknown_fields() -> None:
    obj = copy.deepcopy(CASES[4][1])
    obj["metadata"]["labels"] = {"any": "label"}
    dropped = prune_unknown(V, kind_schema(V, "Deployment", "apps/v1"), obj)
    assert dropped == ["spec.template.spec.containers[0].imagee"]
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "nginx"}]
    assert obj["metadata"]["labels"] == {"any": "label"}
