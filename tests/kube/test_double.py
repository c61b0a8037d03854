"""Behaviour of the API double's own helpers (seeding, request log, fault injection,
history) and of details the contract suite does not reach; always against the double."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient, ApiException, Configuration

from tests.kube.apiserver import ApiServerDouble, RequestRecord
from tests.kube.fixtures import KubeApi


def _status(exc: ApiException) -> dict[str, Any]:
    """The Status object an API error carries."""
    assert exc.body is not None, f"{exc.status} {exc.reason}: no body"
    return dict(json.loads(exc.body))


def _raw(body: dict[str, Any]) -> Any:
    """A body sent as a dict where the client's signature says a model goes."""
    return body


pytestmark = pytest.mark.kube
MERGE = "application/merge-patch+json"


def _double(kube: KubeApi) -> ApiServerDouble:
    assert kube.double is not None
    return kube.double


async def test_seeded_deployment_has_revisioned_replicasets_and_ready_owned_pods(
    kube_double: KubeApi,
) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    double.seed_node("node-1")
    seeded = double.seed_deployment(
        "web", ns, replicas=3, images=["nginx:1.25", "nginx:1.26"], sidecar="envoy:1.30"
    )
    api = client.AppsV1Api(await kube_double.api_client())
    rss = (await api.list_namespaced_replica_set(ns, label_selector="app=web")).items
    by_rev = {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in rss}
    assert set(by_rev) == {"1", "2"}
    assert by_rev["1"].spec.replicas == 0 and by_rev["2"].spec.replicas == 3
    assert by_rev["1"].spec.template.spec.containers[0].image == "nginx:1.25"
    dep = seeded.deployment
    for rs in rss:
        h = rs.metadata.labels["pod-template-hash"]
        assert (
            rs.metadata.name == f"web-{h}"
            and rs.spec.selector.match_labels["pod-template-hash"] == h
        )
        assert rs.metadata.owner_references[0].uid == dep["metadata"]["uid"]
    pods = (
        await client.CoreV1Api(await kube_double.api_client()).list_namespaced_pod(
            ns,
            label_selector=f"pod-template-hash={by_rev['2'].metadata.labels['pod-template-hash']}",
            field_selector="status.phase=Running,spec.nodeName=node-1",
        )
    ).items
    assert len(pods) == 3
    assert all(p.metadata.owner_references[0].name == by_rev["2"].metadata.name for p in pods)
    assert all(c.type != "Ready" or c.status == "True" for p in pods for c in p.status.conditions)
    assert dep["status"]["readyReplicas"] == 3


async def test_rollback_is_a_json_patch_of_the_template_guarded_by_a_test_op(
    kube_double: KubeApi,
) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    seeded = double.seed_deployment("web", ns, images=["nginx:1.25", "nginx:1.26"])
    old = seeded.replicasets[0]
    template = json.loads(json.dumps(old["spec"]["template"]))
    del template["metadata"]["labels"]["pod-template-hash"]
    api = client.AppsV1Api(await kube_double.api_client())
    dep = await api.read_namespaced_deployment("web", ns)
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": dep.metadata.resource_version},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]
    out = await api.patch_namespaced_deployment("web", ns, ops)
    assert out.spec.template.spec.containers[0].image == "nginx:1.25"
    assert out.metadata.generation == dep.metadata.generation + 1
    with pytest.raises(ApiException) as info:
        await api.patch_namespaced_deployment("web", ns, ops)  # same RV again: now stale
    assert info.value.status == 422


async def test_request_log_names_verbs_resources_and_subresources_as_rbac_does(
    kube_double: KubeApi,
) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    seeded = double.seed_deployment("web", ns, replicas=2)
    api_client = await kube_double.api_client()
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    double.clear_requests()
    await apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    await apps.patch_namespaced_deployment(
        "web", ns, {"metadata": {"annotations": {"a": "b"}}}, _content_type=MERGE, dry_run="All"
    )
    pod = seeded.pods[0]["metadata"]["name"]
    await core.create_namespaced_pod_eviction(
        pod, ns, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
    )
    await core.list_namespaced_pod(ns)
    assert double.requests == [
        RequestRecord("patch", "apps", "v1", "deployments", "scale", ns, "web", False),
        RequestRecord("patch", "apps", "v1", "deployments", "", ns, "web", True),
        RequestRecord("create", "", "v1", "pods", "eviction", ns, pod, False),
        RequestRecord("list", "", "v1", "pods", "", ns, "", False),
    ]
    assert double.rbac_rules() == {
        ("apps", "deployments/scale"): {"patch"},
        ("apps", "deployments"): {"patch"},
        ("", "pods/eviction"): {"create"},
        ("", "pods"): {"list"},
    }


async def test_injected_error_is_answered_and_nothing_is_applied(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    double.seed_deployment("web", ns)
    double.inject_error(409, "Conflict", "injected", verb="patch", resource="deployments")
    api = client.AppsV1Api(await kube_double.api_client())
    with pytest.raises(ApiException) as info:
        await api.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 9}})
    assert info.value.status == 409 and _status(info.value)["message"] == "injected"
    assert (await api.read_namespaced_deployment("web", ns)).spec.replicas == 2
    await api.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 9}})
    assert (await api.read_namespaced_deployment("web", ns)).spec.replicas == 9


async def test_compaction_turns_a_recent_resource_version_into_410(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    api = client.CoreV1Api(await kube_double.api_client())
    rv = (await api.list_namespaced_config_map(ns)).metadata.resource_version
    await api.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
    )
    double.compact()
    with pytest.raises(ApiException) as info:
        async with watch.Watch() as w:
            async for _ in w.stream(
                api.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=1
            ):
                pass
    assert info.value.status == 410 and "too old resource version" in str(info.value.reason)


async def test_watch_reports_an_object_leaving_the_selector_as_deleted(
    kube_double: KubeApi,
) -> None:
    ns = kube_double.namespace
    api = client.CoreV1Api(await kube_double.api_client())
    rv = (await api.list_namespaced_config_map(ns)).metadata.resource_version
    await api.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x", labels={"team": "a"}))
    )
    await api.patch_namespaced_config_map("x", ns, {"metadata": {"labels": {"team": "b"}}})
    await api.patch_namespaced_config_map("x", ns, {"metadata": {"labels": {"team": "a"}}})
    seen = []
    async with watch.Watch() as w:
        async for e in w.stream(
            api.list_namespaced_config_map,
            ns,
            resource_version=rv,
            label_selector="team=a",
            timeout_seconds=5,
        ):
            seen.append(e["type"])
            if len(seen) == 3:
                break
    assert seen == ["ADDED", "DELETED", "ADDED"]


async def test_list_pages_with_limit_and_continue(kube_double: KubeApi) -> None:
    ns = kube_double.namespace
    api = client.CoreV1Api(await kube_double.api_client())
    for i in range(5):
        await api.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{i}"))
        )
    first = await api.list_namespaced_config_map(ns, limit=2)
    assert [i.metadata.name for i in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 3
    rest = await api.list_namespaced_config_map(ns, limit=10, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["cm-2", "cm-3", "cm-4"]
    assert rest.metadata._continue is None


async def test_budget_with_max_unavailable_percentage_counts_controller_replicas(
    kube_double: KubeApi,
) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    seeded = double.seed_deployment("web", ns, replicas=4)
    double.seed_pdb("web", ns, match_labels={"app": "web"}, max_unavailable="25%")
    policy = client.PolicyV1Api(await kube_double.api_client())
    pdb = await policy.read_namespaced_pod_disruption_budget("web", ns)
    assert (
        pdb.status.expected_pods,
        pdb.status.desired_healthy,
        pdb.status.disruptions_allowed,
    ) == (4, 3, 1)
    core = client.CoreV1Api(await kube_double.api_client())
    names = [p["metadata"]["name"] for p in seeded.pods]
    await core.create_namespaced_pod_eviction(
        names[0], ns, client.V1Eviction(metadata=client.V1ObjectMeta(name=names[0]))
    )
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_pod_eviction(
            names[1], ns, client.V1Eviction(metadata=client.V1ObjectMeta(name=names[1]))
        )
    assert info.value.status == 429
    double.sync_pdb_status(ns)
    pdb = await policy.read_namespaced_pod_disruption_budget("web", ns)
    assert (pdb.status.current_healthy, pdb.status.disruptions_allowed) == (3, 0)


async def test_warn_field_validation_drops_unknown_fields_with_a_warning_header() -> None:
    double = ApiServerDouble(default_field_validation="Warn")
    async with double.serve() as url:
        api_client = ApiClient(Configuration(host=url))
        try:
            api = client.CoreV1Api(api_client)
            out, code, headers = await api.create_namespaced_config_map_with_http_info(
                "default", _raw({"metadata": {"name": "w"}, "data": {}, "bogus": 1})
            )
        finally:
            await api_client.close()
    assert code == 201 and out.metadata.name == "w"
    assert headers.getall("Warning") == ['299 - "unknown field \\"bogus\\""']
    stored = double.get("ConfigMap", "default", "w")
    assert stored is not None and "bogus" not in stored


async def test_deleting_a_scheduled_pod_returns_it_marked_for_graceful_deletion(
    kube_double: KubeApi,
) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    pod = double.seed_pod("p", ns)
    api = client.CoreV1Api(await kube_double.api_client())
    out = await api.delete_namespaced_pod("p", ns)
    assert isinstance(out, client.V1Pod) and out.metadata.uid == pod["metadata"]["uid"]
    assert out.metadata.deletion_grace_period_seconds == 30
    assert double.get("Pod", ns, "p") is None


async def test_finalizers_hold_an_object_until_they_are_removed(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    api = client.CoreV1Api(await kube_double.api_client())
    await api.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="f", finalizers=["vigil.io/hold"]))
    )
    await api.delete_namespaced_config_map("f", ns)
    held = await api.read_namespaced_config_map("f", ns)
    assert held.metadata.deletion_timestamp is not None
    await api.patch_namespaced_config_map(
        "f", ns, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    assert double.get("ConfigMap", ns, "f") is None


async def test_pod_spec_is_immutable_except_images(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    double.seed_pod("p", ns)
    api = client.CoreV1Api(await kube_double.api_client())
    patch: dict[str, Any] = {"spec": {"containers": [{"name": "app", "image": "pause:new"}]}}
    assert (await api.patch_namespaced_pod("p", ns, patch)).spec.containers[0].image == "pause:new"
    with pytest.raises(ApiException) as info:
        await api.patch_namespaced_pod("p", ns, {"spec": {"hostname": "other"}})
    body = _status(info.value)
    assert info.value.status == 422 and body["details"]["causes"][0]["field"] == "spec"


async def test_create_in_a_missing_namespace_is_404(kube_double: KubeApi) -> None:
    api = client.CoreV1Api(await kube_double.api_client())
    with pytest.raises(ApiException) as info:
        await api.create_namespaced_config_map(
            "nowhere", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
        )
    assert _status(info.value)["message"] == 'namespaces "nowhere" not found'


async def test_deleting_a_namespace_deletes_its_contents(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    double.seed_deployment("web", ns)
    api = client.CoreV1Api(await kube_double.api_client())
    resp: Any = await api.delete_namespace(ns, _preload_content=False)  # typed as V1Status
    out = await resp.json()
    resp.release()
    assert out["kind"] == "Namespace" and out["status"]["phase"] == "Terminating"
    assert double.objects("Pod", ns) == [] and double.objects("Deployment", ns) == []


async def test_job_gets_a_generated_selector_and_restart_policy_is_checked(
    kube_double: KubeApi,
) -> None:
    ns = kube_double.namespace
    api = client.BatchV1Api(await kube_double.api_client())
    spec = client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1")])
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="j"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=spec)),
    )
    with pytest.raises(ApiException) as info:
        await api.create_namespaced_job(ns, job)
    assert (
        _status(info.value)["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"
    )
    spec.restart_policy = "Never"
    out = await api.create_namespaced_job(ns, job)
    uid = out.metadata.uid
    assert out.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert out.spec.template.metadata.labels["job-name"] == "j"
    assert out.spec.backoff_limit == 6


async def test_other_kinds_the_remediator_touches_round_trip(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    double.seed_node("node-1")
    api_client = await kube_double.api_client()
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    node = await core.patch_node("node-1", {"spec": {"unschedulable": True}}, _content_type=MERGE)
    assert node.spec.unschedulable is True
    cordoned = await core.list_node(field_selector="spec.unschedulable=true")
    assert [n.metadata.name for n in cordoned.items] == ["node-1"]
    event = await core.create_namespaced_event(
        ns,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="vigil-"),
            reason="Remediated",
            message="restarted",
            type="Normal",
            involved_object=client.V1ObjectReference(kind="Node", name="node-1"),
        ),
    )
    assert event.metadata.name.startswith("vigil-") and len(event.metadata.name) == 11
    labels = {"app": "db"}
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="db", image="pg:16")]),
    )
    await apps.create_namespaced_stateful_set(
        ns,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="db"),
            spec=client.V1StatefulSetSpec(
                selector=client.V1LabelSelector(match_labels=labels),
                service_name="db",
                template=template,
            ),
        ),
    )
    scale = await apps.patch_namespaced_stateful_set_scale("db", ns, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3 and scale.status.selector == "app=db"
    ds = await apps.create_namespaced_daemon_set(
        ns,
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="agent"),
            spec=client.V1DaemonSetSpec(
                selector=client.V1LabelSelector(match_labels=labels), template=template
            ),
        ),
    )
    assert ds.metadata.generation == 1 and ds.spec.update_strategy.type == "RollingUpdate"
    await apps.create_namespaced_controller_revision(
        ns,
        client.V1ControllerRevision(
            metadata=client.V1ObjectMeta(name="db-1", labels=labels), revision=1, data={}
        ),
    )
    revs = await apps.list_namespaced_controller_revision(ns, label_selector="app=db")
    assert [r.revision for r in revs.items] == [1]
    double.create(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                "maxReplicas": 5,
            },
        }
    )
    hpa = await client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
        "db", ns
    )
    assert hpa.spec.min_replicas == 1 and hpa.status.desired_replicas == 0


async def test_rollout_restart_annotation_bumps_generation(kube_double: KubeApi) -> None:
    double, ns = _double(kube_double), kube_double.namespace
    double.seed_deployment("web", ns)
    api = client.AppsV1Api(await kube_double.api_client())
    patch = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}
                }
            }
        }
    }
    out = await api.patch_namespaced_deployment("web", ns, patch, _content_type=MERGE)
    assert out.metadata.generation == 2
    assert (
        out.spec.template.metadata.annotations
        == patch["spec"]["template"]["metadata"]["annotations"]
    )
