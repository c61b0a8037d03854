"""Contract tests of the Kubernetes API as Vigil's remediator uses it through
kubernetes-asyncio. They run against the in-process double by default and, unchanged,
against a real cluster when VIGIL_KUBECONFIG names a kubeconfig (deploy/e2e/kind.sh does
that), so any difference between the double and kube-apiserver shows up as a failure there.
Known differences are marked with :func:`tests.kube.fixtures.divergence`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiException
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from tests.kube.fixtures import KubeApi, divergence

pytestmark = pytest.mark.kube

PAUSE = "registry.k8s.io/pause:3.10"
MERGE = "application/merge-patch+json"
READY_TIMEOUT_S = 180


def status_body(e: ApiException) -> dict[str, Any]:
    assert e.body is not None, f"{e.status} {e.reason}: no body"
    return dict(json.loads(e.body))


def configmap(
    name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None
) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or {"k": "v"}
    )


def deployment(name: str, replicas: int = 2, sidecar: bool = True) -> client.V1Deployment:
    containers = [client.V1Container(name="app", image=PAUSE)]
    if sidecar:
        containers.append(client.V1Container(name="sidecar", image=PAUSE))
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=containers),
            ),
        ),
    )


async def core(kube: KubeApi) -> client.CoreV1Api:
    return client.CoreV1Api(await kube.api_client())


async def apps(kube: KubeApi) -> client.AppsV1Api:
    return client.AppsV1Api(await kube.api_client())


async def expect_error(code: int, coro: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as info:
        await coro
    assert info.value.status == code, info.value.body
    return status_body(info.value)


# --- create / get / list -----------------------------------------------------------------


async def test_created_objects_carry_server_metadata_and_list_by_selectors(
    kube_api: KubeApi,
) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        await api.create_namespaced_config_map(
            ns, configmap(name, {"tier": tier} if tier else {"other": "x"})
        )
    got = await api.read_namespaced_config_map("a", ns)
    assert isinstance(got, client.V1ConfigMap)
    assert got.metadata.uid and got.metadata.resource_version.isdigit()
    assert got.metadata.creation_timestamp is not None and got.metadata.namespace == ns

    async def names(**kw: Any) -> list[str]:
        out = await api.list_namespaced_config_map(ns, **kw)
        assert isinstance(out, client.V1ConfigMapList) and out.metadata.resource_version
        # a real cluster adds kube-root-ca.crt to every namespace
        return sorted(i.metadata.name for i in out.items if i.metadata.name in {"a", "b", "c"})

    assert await names(label_selector="tier in (web,db)") == ["a", "b"]
    assert await names(label_selector="tier notin (web)") == ["b", "c"]
    assert await names(label_selector="!tier") == ["c"]
    assert await names(label_selector="tier,tier!=db") == ["a"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="metadata.name!=b") == ["a", "c"]


async def test_missing_object_is_404_with_the_real_status_body(kube_api: KubeApi) -> None:
    body = await expect_error(
        404, (await apps(kube_api)).read_namespaced_deployment("missing", kube_api.namespace)
    )
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "group": "apps", "kind": "deployments"},
        "code": 404,
    }


async def test_creating_an_existing_name_is_409_already_exists(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    await api.create_namespaced_config_map(ns, configmap("dup"))
    body = await expect_error(409, api.create_namespaced_config_map(ns, configmap("dup")))
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "dup" already exists'
    assert body["details"] == {"name": "dup", "kind": "configmaps"}


# --- optimistic concurrency ----------------------------------------------------------------


async def test_put_with_a_stale_resource_version_is_409_conflict(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    first = await api.create_namespaced_config_map(ns, configmap("cas"))
    first.data = {"k": "v2"}
    second = await api.replace_namespaced_config_map("cas", ns, first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"k": "v3"}
    body = await expect_error(409, api.replace_namespaced_config_map("cas", ns, first))
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "cas": the object '
        "has been modified; please apply your changes to the latest "
        "version and try again"
    )
    assert (await api.read_namespaced_config_map("cas", ns)).data == {"k": "v2"}


async def test_json_patch_with_a_failing_test_op_is_422_and_changes_nothing(
    kube_api: KubeApi,
) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    cm = await api.create_namespaced_config_map(ns, configmap("jp"))
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "replace", "path": "/data/k", "value": "changed"},
    ]
    body = await expect_error(422, api.patch_namespaced_config_map("jp", ns, stale))
    assert body["reason"] == "Invalid"
    assert (await api.read_namespaced_config_map("jp", ns)).data == {"k": "v"}
    fresh = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": cm.metadata.resource_version},
        {"op": "replace", "path": "/data/k", "value": "changed"},
    ]
    assert (await api.patch_namespaced_config_map("jp", ns, fresh)).data == {"k": "changed"}


async def test_merge_patch_sets_and_deletes_annotations_keeping_the_rest(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    cm = configmap("mp")
    cm.metadata.annotations = {"keep": "1", "drop": "2"}
    await api.create_namespaced_config_map(ns, cm)
    out = await api.patch_namespaced_config_map(
        "mp", ns, {"metadata": {"annotations": {"new": "3", "drop": None}}}, _content_type=MERGE
    )
    assert out.metadata.annotations == {"keep": "1", "new": "3"}


async def test_patch_that_changes_nothing_keeps_the_resource_version(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    cm = await api.create_namespaced_config_map(ns, configmap("noop"))
    out = await api.patch_namespaced_config_map(
        "noop", ns, {"data": {"k": "v"}}, _content_type=MERGE
    )
    assert out.metadata.resource_version == cm.metadata.resource_version


async def test_patch_carrying_a_stale_resource_version_is_409(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    await api.create_namespaced_config_map(ns, configmap("rvp"))
    await expect_error(
        409,
        api.patch_namespaced_config_map(
            "rvp",
            ns,
            {"metadata": {"resourceVersion": "1"}, "data": {"k": "x"}},
            _content_type=MERGE,
        ),
    )


async def test_strategic_merge_of_one_container_keeps_the_sidecar(kube_api: KubeApi) -> None:
    api, ns = await apps(kube_api), kube_api.namespace
    created = await api.create_namespaced_deployment(ns, deployment("smp"))
    assert created.metadata.generation == 1
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]}
            }
        }
    }
    out = await api.patch_namespaced_deployment("smp", ns, patch)
    assert [(c.name, c.image) for c in out.spec.template.spec.containers] == [
        ("app", "registry.k8s.io/pause:3.9"),
        ("sidecar", PAUSE),
    ]
    assert out.metadata.generation == 2
    merged = await api.patch_namespaced_deployment("smp", ns, patch, _content_type=MERGE)
    assert [c.name for c in merged.spec.template.spec.containers] == ["app"]


async def test_scale_subresource_reads_and_patches_replicas(kube_api: KubeApi) -> None:
    api, ns = await apps(kube_api), kube_api.namespace
    await api.create_namespaced_deployment(ns, deployment("sc", replicas=2))
    scale = await api.read_namespaced_deployment_scale("sc", ns)
    assert isinstance(scale, client.V1Scale) and scale.spec.replicas == 2
    out = await api.patch_namespaced_deployment_scale("sc", ns, {"spec": {"replicas": 0}})
    assert out.spec.replicas == 0
    dep = await api.read_namespaced_deployment("sc", ns)
    assert dep.spec.replicas == 0 and dep.metadata.generation == 2
    assert dep.spec.template.spec.containers[1].name == "sidecar"
    body = await expect_error(409, api.replace_namespaced_deployment_scale("sc", ns, scale))
    assert body["reason"] == "Conflict"
    for _ in range(5):  # a real deployment controller may write the status in between
        fresh = await api.read_namespaced_deployment_scale("sc", ns)
        fresh.spec.replicas = 1
        try:
            assert (
                await api.replace_namespaced_deployment_scale("sc", ns, fresh)
            ).spec.replicas == 1
            break
        except ApiException as e:
            assert e.status == 409
    else:
        pytest.fail("scale PUT with a fresh resourceVersion kept conflicting")


async def test_status_writes_go_through_the_status_subresource_only(kube_api: KubeApi) -> None:
    api, ns = await apps(kube_api), kube_api.namespace
    await api.create_namespaced_deployment(ns, deployment("st", replicas=0))
    status = {"status": {"observedGeneration": 7, "replicas": 0}}
    out = await api.patch_namespaced_deployment("st", ns, status, _content_type=MERGE)
    assert out.status.observed_generation != 7
    out = await api.patch_namespaced_deployment_status("st", ns, status, _content_type=MERGE)
    assert out.status.observed_generation == 7


# --- eviction ------------------------------------------------------------------------------


async def wait_for(list_fn: Any, ns: str, done: Any) -> None:
    """Until ``done(items)``: list, then wait for the next watch event and list again."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            listed = await list_fn(ns)
            if done(listed.items):
                return
            async with watch.Watch() as w:
                async for _ in w.stream(
                    list_fn,
                    ns,
                    timeout_seconds=10,
                    resource_version=listed.metadata.resource_version,
                ):
                    break


async def make_ready(kube: KubeApi, api: client.CoreV1Api, names: list[str]) -> None:
    """On the double, report the pods Running and Ready as a kubelet would; on a cluster,
    wait for the kubelet to do so."""
    ns = kube.namespace
    if kube.double is not None:
        ready = [{"type": t, "status": "True"} for t in ("Ready", "ContainersReady")]
        for name in names:
            await api.patch_namespaced_pod_status(
                name, ns, {"status": {"phase": "Running", "conditions": ready}}
            )
        return

    def all_ready(pods: list[client.V1Pod]) -> bool:
        return all(
            any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
            for p in pods
            if p.metadata.name in names
        )

    await wait_for(api.list_namespaced_pod, ns, all_ready)


async def pdb_settled(kube: KubeApi, policy: client.PolicyV1Api, name: str) -> None:
    """Wait for the disruption controller (a cluster only: the double computes live)."""
    if kube.double is not None:
        return

    def settled(pdbs: list[client.V1PodDisruptionBudget]) -> bool:
        return any(
            p.metadata.name == name
            and p.status is not None
            and p.status.observed_generation == p.metadata.generation
            and p.status.expected_pods == 2
            for p in pdbs
        )

    await wait_for(policy.list_namespaced_pod_disruption_budget, kube.namespace, settled)


async def test_eviction_is_429_when_the_budget_forbids_it_and_deletes_when_allowed(
    kube_api: KubeApi,
) -> None:
    client_ = await kube_api.api_client()
    api, policy, ns = client.CoreV1Api(client_), client.PolicyV1Api(client_), kube_api.namespace
    names = ["ev-0", "ev-1"]
    for name in names:
        await api.create_namespaced_pod(
            ns,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=name, labels={"app": "ev"}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image=PAUSE)],
                    termination_grace_period_seconds=0,
                ),
            ),
        )
    await make_ready(kube_api, api, names)
    await policy.create_namespaced_pod_disruption_budget(
        ns,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="ev"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=2, selector=client.V1LabelSelector(match_labels={"app": "ev"})
            ),
        ),
    )
    await pdb_settled(kube_api, policy, "ev")
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="ev-0", namespace=ns))
    body = await expect_error(429, api.create_namespaced_pod_eviction("ev-0", ns, eviction))
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget ev needs 2 healthy pods and has 2 currently",
        }
    ]
    await policy.patch_namespaced_pod_disruption_budget(
        "ev", ns, {"spec": {"minAvailable": 1}}, _content_type=MERGE
    )
    await pdb_settled(kube_api, policy, "ev")
    # typed as V1Eviction; with _preload_content=False it is the raw aiohttp response
    resp: Any = await api.create_namespaced_pod_eviction(
        "ev-0", ns, eviction, _preload_content=False
    )
    assert resp.status == 201
    assert await resp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    resp.release()
    try:
        pod = await api.read_namespaced_pod("ev-0", ns)
        assert pod.metadata.deletion_timestamp is not None
    except ApiException as e:
        assert e.status == 404


# --- delete / dry run ----------------------------------------------------------------------


async def test_delete_with_stale_preconditions_is_409_and_keeps_the_object(
    kube_api: KubeApi,
) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    cm = await api.create_namespaced_config_map(ns, configmap("del"))
    rv, uid = cm.metadata.resource_version, cm.metadata.uid
    body = await expect_error(
        409,
        api.delete_namespaced_config_map(
            "del",
            ns,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1")),
        ),
    )
    assert body["reason"] == "Conflict" and body["details"] == {"name": "del", "kind": "ConfigMap"}
    assert body["message"] == (
        f'Operation cannot be fulfilled on ConfigMap "del": the '
        f"ResourceVersion in the precondition (1) does not match the "
        f"ResourceVersion in record ({rv}). The object might have been "
        f"modified"
    )
    other = "00000000-0000-0000-0000-000000000000"
    body = await expect_error(
        409,
        api.delete_namespaced_config_map(
            "del", ns, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=other))
        ),
    )
    assert body["message"].endswith(
        f"the UID in the precondition ({other}) does not match the "
        f"UID in record ({uid}). The object might have been "
        f"deleted and then recreated"
    )
    out = await api.delete_namespaced_config_map(
        "del",
        ns,
        body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(
                resource_version=cm.metadata.resource_version, uid=cm.metadata.uid
            ),
            propagation_policy="Background",
        ),
    )
    assert isinstance(out, client.V1Status) and out.status == "Success"
    await expect_error(404, api.read_namespaced_config_map("del", ns))


async def test_dry_run_returns_the_would_be_object_and_stores_nothing(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    dry = await api.create_namespaced_config_map(ns, configmap("dry"), dry_run="All")
    assert dry.metadata.name == "dry" and dry.data == {"k": "v"}
    await expect_error(404, api.read_namespaced_config_map("dry", ns))
    real = await api.create_namespaced_config_map(ns, configmap("dry"))
    patched = await api.patch_namespaced_config_map(
        "dry", ns, {"data": {"k": "new"}}, dry_run="All", _content_type=MERGE
    )
    assert patched.data == {"k": "new"}
    await api.delete_namespaced_config_map("dry", ns, dry_run="All")
    after = await api.read_namespaced_config_map("dry", ns)
    assert after.data == {"k": "v"}
    assert after.metadata.resource_version == real.metadata.resource_version


# --- leases --------------------------------------------------------------------------------


async def test_lease_update_from_a_stale_copy_is_409(kube_api: KubeApi) -> None:
    api_client, ns = await kube_api.api_client(), kube_api.namespace
    # non-zero microseconds: a MicroTime without them is not RFC3339Micro
    record = LeaderElectionRecord(
        "a", "15", "2025-01-01 00:00:00.123456", "2025-01-01 00:00:00.123456"
    )
    lock_a = LeaseLock("vigil-leader", ns, "a", api_client)
    lock_b = LeaseLock("vigil-leader", ns, "b", api_client)
    assert await lock_a.create("vigil-leader", ns, record)
    found_a, _ = await lock_a.get("vigil-leader", ns)
    found_b, _ = await lock_b.get("vigil-leader", ns)
    assert found_a and found_b
    renewed = LeaderElectionRecord(
        "a", "15", "2025-01-01 00:00:00.123456", "2025-01-01 00:00:05.123456"
    )
    assert await lock_a.update("vigil-leader", ns, renewed)
    stale_lease = lock_b.lease_reference
    assert isinstance(stale_lease, client.V1Lease)
    stale_lease.spec.holder_identity = "b"
    coordination = client.CoordinationV1Api(api_client)
    body = await expect_error(
        409, coordination.replace_namespaced_lease("vigil-leader", ns, stale_lease)
    )
    assert body["reason"] == "Conflict"
    lease = await coordination.read_namespaced_lease("vigil-leader", ns)
    assert lease.spec.holder_identity == "a"


# --- watch ---------------------------------------------------------------------------------


async def test_watch_replays_added_modified_deleted_from_a_resource_version(
    kube_api: KubeApi,
) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    start = (await api.list_namespaced_config_map(ns)).metadata.resource_version
    await api.create_namespaced_config_map(ns, configmap("w", {"watch": "me"}))
    await api.patch_namespaced_config_map("w", ns, {"data": {"k": "2"}}, _content_type=MERGE)
    await api.delete_namespaced_config_map("w", ns)
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(30), watch.Watch() as w:
        async for event in w.stream(
            api.list_namespaced_config_map,
            ns,
            label_selector="watch",
            resource_version=start,
            timeout_seconds=20,
        ):
            assert isinstance(event["object"], client.V1ConfigMap)
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_watch_from_a_too_old_resource_version_is_410_gone(kube_api: KubeApi) -> None:
    api = await core(kube_api)
    with pytest.raises(ApiException) as info:
        async with asyncio.timeout(30), watch.Watch() as w:
            async for _ in w.stream(
                api.list_namespaced_config_map,
                kube_api.namespace,
                resource_version="1",
                timeout_seconds=5,
            ):
                pass
    assert info.value.status == 410


# --- validation ----------------------------------------------------------------------------


def raw_configmap(name: str, **extra: Any) -> Any:  # a dict, sent where a V1ConfigMap goes
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"k": "v"},
        **extra,
    }


async def test_unknown_field_with_strict_field_validation_is_400(kube_api: KubeApi) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    body = await expect_error(
        400,
        api.create_namespaced_config_map(
            ns, raw_configmap("strict", bogus=1), field_validation="Strict"
        ),
    )
    assert body["reason"] == "BadRequest"
    assert 'strict decoding error: unknown field "bogus"' in body["message"]
    await api.create_namespaced_config_map(ns, configmap("strict"))
    body = await expect_error(
        400,
        api.patch_namespaced_config_map(
            "strict", ns, {"spec": {"x": 1}}, field_validation="Strict"
        ),
    )
    assert 'unknown field "spec"' in body["message"]


@divergence(
    "the double defaults to fieldValidation=Strict so typos fail loudly; the real "
    "default is Warn (drop the field, answer 201 with a Warning header)"
)
async def test_unknown_field_without_field_validation_is_dropped_with_a_warning(
    kube_api: KubeApi,
) -> None:
    api, ns = await core(kube_api), kube_api.namespace
    out, code, headers = await api.create_namespaced_config_map_with_http_info(
        ns, raw_configmap("warned", bogus=1)
    )
    assert code == 201 and out.metadata.name == "warned"
    assert any("bogus" in w for w in headers.getall("Warning", []))


async def test_deployment_without_an_image_is_422_invalid(kube_api: KubeApi) -> None:
    api, ns = await apps(kube_api), kube_api.namespace
    bad = deployment("noimg", sidecar=False)
    bad.spec.template.spec.containers[0].image = None  # type: ignore[assignment]  # invalid on purpose
    body = await expect_error(422, api.create_namespaced_deployment(ns, bad))
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Deployment.apps "noimg" is invalid: spec.template.spec.containers[0].image: Required value'
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value",
            "field": "spec.template.spec.containers[0].image",
        }
    ]


async def test_selector_not_matching_the_template_is_422(kube_api: KubeApi) -> None:
    api, ns = await apps(kube_api), kube_api.namespace
    bad = deployment("mismatch")
    bad.spec.selector.match_labels = {"app": "other"}
    body = await expect_error(422, api.create_namespaced_deployment(ns, bad))
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


async def test_discovery_and_version_answer(kube_api: KubeApi) -> None:
    api_client = await kube_api.api_client()
    version = await client.VersionApi(api_client).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    resources = await client.AppsV1Api(api_client).get_api_resources()
    names = {r.name for r in resources.resources}
    assert {"deployments", "deployments/scale", "replicasets"} <= names
