"""Strategic merge patch and selector parsing of the API double against the upstream
semantics (k8s.io/apimachinery strategicpatch and labels), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.patching import json_patch, merge_patch, strategic_merge_patch
from tests.kube.schema import schema_version
from tests.kube.selectors import (
    Requirement,
    labels_match,
    parse_label_selector,
    selector_string,
)
from tests.kube.status import ApiError

pytestmark = pytest.mark.kube
V = schema_version("1.32")


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def smp(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return strategic_merge_patch(V, doc["kind"], doc["apiVersion"], doc, patch)


def test_containers_merge_by_name_in_patch_then_live_order() -> None:
    doc = pod(
        containers=[
            {"name": "a", "image": "1"},
            {"name": "b", "image": "1"},
            {"name": "c", "image": "1"},
        ]
    )
    out = smp(
        doc, {"spec": {"containers": [{"name": "c", "image": "2"}, {"name": "d", "image": "2"}]}}
    )
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [
        ("a", "1"),
        ("b", "1"),
        ("c", "2"),
        ("d", "2"),
    ]


def test_env_merges_by_name_and_ports_by_container_port() -> None:
    # upstream's mergeSortedSlice puts a patch item the live list lacks before live-only items
    doc = pod(
        containers=[
            {
                "name": "a",
                "env": [{"name": "X", "value": "1"}],
                "ports": [{"containerPort": 80, "name": "http"}],
            }
        ]
    )
    out = smp(
        doc,
        {
            "spec": {
                "containers": [
                    {
                        "name": "a",
                        "env": [{"name": "Y", "value": "2"}],
                        "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 81}],
                    }
                ]
            }
        },
    )
    c = out["spec"]["containers"][0]
    assert c["env"] == [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]
    assert c["ports"] == [{"containerPort": 80, "name": "web"}, {"containerPort": 81}]


def test_atomic_lists_such_as_tolerations_and_args_are_replaced() -> None:
    doc = pod(
        tolerations=[{"key": "a", "operator": "Exists"}],
        containers=[{"name": "a", "args": ["x", "y"]}],
    )
    out = smp(
        doc,
        {
            "spec": {
                "tolerations": [{"key": "b", "operator": "Exists"}],
                "containers": [{"name": "a", "args": ["z"]}],
            }
        },
    )
    assert out["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert out["spec"]["containers"][0]["args"] == ["z"]


def test_patch_directives_delete_and_replace() -> None:
    doc = pod(containers=[{"name": "a"}, {"name": "b"}], nodeSelector={"x": "1", "y": "2"})
    out = smp(
        doc,
        {
            "spec": {
                "containers": [{"name": "a", "$patch": "delete"}],
                "nodeSelector": {"$patch": "replace", "z": "3"},
            }
        },
    )
    assert out["spec"]["containers"] == [{"name": "b"}]
    assert out["spec"]["nodeSelector"] == {"z": "3"}
    out = smp(doc, {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}})
    assert out["spec"]["containers"] == [{"name": "c"}]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["a", "b"]},
    }
    out = smp(doc, {"metadata": {"finalizers": ["b", "c"]}})
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = smp(doc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_retain_keys_clears_the_other_volume_source() -> None:
    doc = pod(volumes=[{"name": "v", "emptyDir": {}}])
    out = smp(
        doc,
        {
            "spec": {
                "volumes": [
                    {"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["name", "hostPath"]}
                ]
            }
        },
    )
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]


def test_set_element_order_reorders_the_list() -> None:
    doc = pod(containers=[{"name": "a"}, {"name": "b"}])
    out = smp(doc, {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]


def test_null_deletes_a_map_key() -> None:
    doc = pod(containers=[{"name": "a"}], nodeSelector={"x": "1"})
    assert "nodeSelector" not in smp(doc, {"spec": {"nodeSelector": None}})["spec"]


def test_missing_merge_key_is_an_error() -> None:
    with pytest.raises(ApiError) as info:
        smp(pod(containers=[{"name": "a"}]), {"spec": {"containers": [{"image": "x"}]}})
    assert "does not contain declared merge key: name" in info.value.message


def test_merge_patch_replaces_lists_and_json_patch_test_failure_is_422() -> None:
    doc = pod(containers=[{"name": "a"}, {"name": "b"}])
    assert merge_patch(doc, {"spec": {"containers": [{"name": "a"}]}})["spec"]["containers"] == [
        {"name": "a"}
    ]
    with pytest.raises(ApiError) as info:
        json_patch(doc, [{"op": "test", "path": "/metadata/name", "value": "q"}])
    assert info.value.code == 422
    assert info.value.details == {
        "causes": [
            {
                "reason": "UnexpectedServerResponse",
                "message": "testing value /metadata/name failed: test failed",
            }
        ]
    }


@pytest.mark.parametrize(
    "selector,labels,expected",
    [
        ("a=1,b!=2", {"a": "1"}, True),
        ("a in (1, 2),!c", {"a": "2", "c": ""}, False),
        ("a notin (1)", {}, True),
        ("a>3", {"a": "4"}, True),
        ("a<3", {"a": "x"}, False),
        ("a==", {"a": ""}, True),
        ("", {}, True),
    ],
)
def test_label_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert (
        labels_match(parse_label_selector(selector), {"metadata": {"labels": labels}}) is expected
    )


@pytest.mark.parametrize("bad", ["a in 1", "a in (1", "a=,", "=x", "a foo (1)", "a>b", "a in ()"])
def test_malformed_label_selector_is_400(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(bad)
    assert info.value.code == 400


def test_parsed_requirements_and_selector_string() -> None:
    assert parse_label_selector("x in (a,b), !y") == [
        Requirement("x", "in", ("a", "b")),
        Requirement("y", "!"),
    ]
    sel = {
        "matchLabels": {"b": "1"},
        "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["z", "y"]},
            {"key": "c", "operator": "DoesNotExist"},
        ],
    }
    assert selector_string(sel) == "a in (y,z),b=1,!c"
