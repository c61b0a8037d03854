"""detector.alerting.rollouts against a small in-process Kubernetes API (aiohttp on loopback)."""

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from detector.alerting.rollouts import Change, ChangeFinder, build_api_client, describe
from detector.errors import EnrichmentError

NS = "shop"
POD = "checkout-7d9f8b6c5-x2x9q"
DEPLOY_UID = "5d2a3c1e-0f7b-4a43-9d3e-2c1b0a9f8e71"
ANOMALY_MS = 1_717_243_200_000  # 2024-06-01T12:00:00Z
LABELS = {
    "__name__": "http_request_duration_seconds",
    "namespace": NS,
    "pod": POD,
    "container": "app",
}
RS_PATH = f"/apis/apps/v1/namespaces/{NS}/replicasets"
CR_PATH = f"/apis/apps/v1/namespaces/{NS}/controllerrevisions"


def ms(stamp):
    return int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp() * 1000)


def owner(kind, name, uid):
    return [
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def pod(name, owners):
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": "2024-06-01T11:57:30Z",
            "labels": {"app": name.split("-")[0]},
            "ownerReferences": owners,
        },
        "spec": {"containers": [{"name": "app", "image": "shop/app:1"}]},
        "status": {"phase": "Running"},
    }


def replicaset(name, *, created, revision, images, deployment="checkout", uid=DEPLOY_UID):
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "annotations": {
                "deployment.kubernetes.io/revision": revision,
                "deployment.kubernetes.io/desired-replicas": "3",
            },
            "ownerReferences": owner("Deployment", deployment, uid),
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": deployment}},
            "template": {
                "metadata": {"labels": {"app": deployment}},
                "spec": {
                    "containers": [
                        {"name": f"c{i}", "image": image} for i, image in enumerate(images)
                    ]
                },
            },
        },
        "status": {"replicas": 3, "readyReplicas": 3},
    }


def revision(name, *, kind, workload, created, number, image):
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "creationTimestamp": created,
            "ownerReferences": owner(kind, workload, f"uid-{workload}"),
        },
        "data": {
            "spec": {
                "template": {
                    "$patch": "replace",
                    "metadata": {"labels": {"app": workload}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                }
            }
        },
        "revision": number,
    }


def not_found(kind, name):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{kind} "{name}" not found',
        "reason": "NotFound",
        "details": {"name": name, "kind": kind},
        "code": 404,
    }


class FakeKube:
    """Serves what detector.alerting.rollouts reads; counts requests; can fail or hang on a path."""

    def __init__(self):
        self.pods = {POD: pod(POD, owner("ReplicaSet", "checkout-7d9f8b6c5", "uid-rs-7"))}
        self.replicasets = [
            replicaset(
                "checkout-7d9f8b6c5",
                created="2024-06-01T11:57:00Z",
                revision="7",
                images=["shop/checkout:1.4.2"],
            ),
            replicaset(
                "checkout-5c4b3a291",
                created="2024-06-01T11:20:00Z",
                revision="6",
                images=["shop/checkout:1.4.1", "envoyproxy/envoy:v1.30"],
            ),
            replicaset(
                "checkout-66f5d4c3b",
                created="2024-05-20T09:00:00Z",
                revision="5",
                images=["shop/checkout:1.3.9"],
            ),
            replicaset(
                "cart-8b7c6d5e4",
                created="2024-06-01T11:58:00Z",
                revision="2",
                images=["shop/cart:2.0"],
                deployment="cart",
                uid="uid-cart",
            ),
            replicaset(
                "checkout-1a2b3c4d5",
                created="2024-06-01T12:05:00Z",
                revision="8",
                images=["shop/checkout:1.4.3"],
            ),  # after the anomaly began
        ]
        self.revisions = [
            revision(
                "ledger-6c9d7f8b5",
                kind="StatefulSet",
                workload="ledger",
                created="2024-06-01T11:50:00Z",
                number=3,
                image="shop/ledger:3.1",
            ),
            revision(
                "ledger-59b8c7d6f",
                kind="StatefulSet",
                workload="ledger",
                created="2024-05-01T08:00:00Z",
                number=2,
                image="shop/ledger:3.0",
            ),
            revision(
                "node-agent-7f6e5d4c3",
                kind="DaemonSet",
                workload="node-agent",
                created="2024-06-01T11:59:15Z",
                number=9,
                image="shop/agent:9",
            ),
        ]
        self.requests: Counter[str] = Counter()
        self.status = {}  # path -> (status, body) to answer instead
        self.hang_on = None
        self.release = asyncio.Event()
        self.hung_done = asyncio.Event()

    def app(self):
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._pod)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/replicasets", self._list)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/controllerrevisions", self._list)
        return app

    async def _answer(self, request, make):
        self.requests[request.path] += 1
        if request.path == self.hang_on:
            try:
                await self.release.wait()
            finally:
                self.hung_done.set()
        if request.path in self.status:
            status, body = self.status[request.path]
            return web.Response(status=status, text=body, content_type="application/json")
        status, doc = make(request)
        return web.json_response(doc, status=status)

    async def _pod(self, request):
        def make(req):
            name = req.match_info["name"]
            if name in self.pods and req.match_info["ns"] == NS:
                return 200, self.pods[name]
            return 404, not_found("pods", name)

        return await self._answer(request, make)

    async def _list(self, request):
        def make(req):
            is_rs = req.path.endswith("/replicasets")
            items = self.replicasets if is_rs else self.revisions
            return 200, {
                "kind": "ReplicaSetList" if is_rs else "ControllerRevisionList",
                "apiVersion": "apps/v1",
                "metadata": {"resourceVersion": "48213"},
                "items": items if req.match_info["ns"] == NS else [],
            }

        return await self._answer(request, make)


@pytest.fixture
async def kube(aiohttp_server):
    fake = FakeKube()
    server = await aiohttp_server(fake.app())
    api = client.ApiClient(configuration=client.Configuration(host=str(server.make_url(""))))
    yield fake, api
    await api.close()


class Clock:
    def __init__(self, now=ANOMALY_MS / 1000):
        self.now = now

    def __call__(self):
        return self.now


def finder(api, **kw):
    return ChangeFinder(api, clock=kw.pop("clock", Clock()), **kw)


async def test_pod_resolves_through_replicaset_to_deployment_rollout_in_window(kube):
    fake, api = kube
    changes = await finder(api).recent_changes(LABELS, anomaly_start_ms=ANOMALY_MS)
    assert changes == [
        Change(
            kind="deployment",
            namespace=NS,
            name="checkout",
            started_ms=ANOMALY_MS - 180_000,
            images=("shop/checkout:1.4.2",),
            revision="7",
        )
    ]
    assert fake.requests == {f"/api/v1/namespaces/{NS}/pods/{POD}": 1, RS_PATH: 1}


async def test_deployment_label_lists_rollouts_newest_first_without_reading_a_pod(kube):
    fake, api = kube
    labels = {"namespace": NS, "deployment": "checkout", "job": "kube-state-metrics"}
    changes = await finder(api, window_s=3600).recent_changes(labels, anomaly_start_ms=ANOMALY_MS)
    assert [(c.revision, c.images) for c in changes] == [
        ("7", ("shop/checkout:1.4.2",)),
        ("6", ("shop/checkout:1.4.1", "envoyproxy/envoy:v1.30")),
    ]
    assert changes[1].started_ms == ms("2024-06-01T11:20:00")
    assert fake.requests == {RS_PATH: 1}


async def test_statefulset_rollouts_come_from_controller_revisions(kube):
    fake, api = kube
    fake.pods["ledger-0"] = pod("ledger-0", owner("StatefulSet", "ledger", "uid-ledger"))
    changes = await finder(api).recent_changes(
        {**LABELS, "pod": "ledger-0"}, anomaly_start_ms=ANOMALY_MS
    )
    assert changes == [
        Change(
            kind="statefulset",
            namespace=NS,
            name="ledger",
            started_ms=ms("2024-06-01T11:50:00"),
            images=("shop/ledger:3.1",),
            revision="3",
        )
    ]
    assert fake.requests[CR_PATH] == 1 and fake.requests[RS_PATH] == 0


async def test_daemonset_label_matches_controller_revisions_by_name(kube):
    _, api = kube
    changes = await finder(api).recent_changes(
        {"namespace": NS, "daemonset": "node-agent"}, anomaly_start_ms=ANOMALY_MS
    )
    assert [(c.kind, c.name, c.revision) for c in changes] == [("daemonset", "node-agent", "9")]


async def test_no_namespace_is_empty_without_a_request(kube):
    fake, api = kube
    labels = {"pod": POD, "deployment": "checkout"}
    assert await finder(api).recent_changes(labels, anomaly_start_ms=ANOMALY_MS) == []
    assert not fake.requests


async def test_pod_that_is_gone_means_no_workload(kube):
    fake, api = kube
    labels = {**LABELS, "pod": "checkout-7d9f8b6c5-gone1"}
    assert await finder(api).recent_changes(labels, anomaly_start_ms=ANOMALY_MS) == []
    assert sum(fake.requests.values()) == 1


async def test_bare_pod_and_bare_replicaset_mean_no_workload(kube):
    fake, api = kube
    fake.pods["debug"] = pod("debug", [])
    fake.pods["worker-x1"] = pod("worker-x1", owner("ReplicaSet", "worker", "uid-w"))
    bare = replicaset("worker", created="2024-06-01T11:59:00Z", revision="1", images=["w:1"])
    bare["metadata"]["ownerReferences"] = []
    fake.replicasets.append(bare)
    f = finder(api)
    for name in ("debug", "worker-x1"):
        assert await f.recent_changes({**LABELS, "pod": name}, anomaly_start_ms=ANOMALY_MS) == []


async def test_replicaset_newer_than_the_cached_list_triggers_one_fresh_list(kube):
    fake, api = kube
    f = finder(api)
    await f.recent_changes(LABELS, anomaly_start_ms=ANOMALY_MS)
    fake.replicasets.append(
        replicaset(
            "checkout-9f8e7d6c5",
            created="2024-06-01T11:59:30Z",
            revision="8",
            images=["shop/checkout:1.5.0"],
        )
    )
    fake.pods["checkout-9f8e7d6c5-abcde"] = pod(
        "checkout-9f8e7d6c5-abcde", owner("ReplicaSet", "checkout-9f8e7d6c5", "uid-rs-8")
    )
    changes = await f.recent_changes(
        {**LABELS, "pod": "checkout-9f8e7d6c5-abcde"}, anomaly_start_ms=ANOMALY_MS
    )
    assert [c.revision for c in changes] == ["8", "7"]
    assert fake.requests[RS_PATH] == 2


@pytest.mark.parametrize("status", [500, 403])
async def test_api_error_is_enrichment_error(kube, status):
    fake, api = kube
    fake.status[RS_PATH] = (status, json.dumps({"kind": "Status", "code": status}))
    with pytest.raises(EnrichmentError, match=f"list replicasets in namespace shop: HTTP {status}"):
        await finder(api).recent_changes(LABELS, anomaly_start_ms=ANOMALY_MS)


async def test_malformed_bodies_are_enrichment_errors(kube):
    fake, api = kube
    fake.status[RS_PATH] = (200, "{not json")
    with pytest.raises(EnrichmentError, match="not JSON"):
        await finder(api).recent_changes(LABELS, anomaly_start_ms=ANOMALY_MS)
    fake.status[RS_PATH] = (200, json.dumps({"items": [{"metadata": {"name": "x"}}]}))
    with pytest.raises(EnrichmentError, match=r"items\[0\]: metadata.creationTimestamp"):
        await finder(api).recent_changes(LABELS, anomaly_start_ms=ANOMALY_MS)


async def test_refused_connection_is_enrichment_error(unused_tcp_port):
    cfg = client.Configuration(host=f"http://127.0.0.1:{unused_tcp_port}")
    async with client.ApiClient(configuration=cfg) as api:
        with pytest.raises(EnrichmentError, match="request failed"):
            await finder(api).recent_changes(LABELS, anomaly_start_ms=ANOMALY_MS)


async def test_lists_are_cached_per_namespace_and_kind_until_the_ttl(kube):
    fake, api = kube
    clock = Clock()
    f = finder(api, clock=clock, cache_ttl_s=10.0)
    labels = {"namespace": NS, "deployment": "checkout"}
    await asyncio.gather(*(f.recent_changes(labels, anomaly_start_ms=ANOMALY_MS) for _ in range(5)))
    await f.recent_changes({**labels, "deployment": "cart"}, anomaly_start_ms=ANOMALY_MS)
    assert fake.requests[RS_PATH] == 1
    clock.now += 10.0
    await f.recent_changes(labels, anomaly_start_ms=ANOMALY_MS)
    assert fake.requests[RS_PATH] == 2


async def test_api_that_never_answers_fails_within_the_request_timeout(kube):
    fake, api = kube
    fake.hang_on = RS_PATH
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        with pytest.raises(EnrichmentError, match=r"no answer .* within 0\.2 s"):
            await finder(api, request_timeout_s=0.2).recent_changes(
                LABELS, anomaly_start_ms=ANOMALY_MS
            )
        assert loop.time() - began < 1.0
    finally:
        fake.release.set()
        await asyncio.wait_for(fake.hung_done.wait(), timeout=5)


@pytest.mark.parametrize(
    ("started_ms", "images", "text"),
    [
        (
            ANOMALY_MS - 180_000,
            ("shop/checkout:1.4.2",),
            "started 3 min after rollout of deployment/checkout to image shop/checkout:1.4.2",
        ),
        (
            ANOMALY_MS - 45_500,
            ("a:1", "b:2"),
            "started 45 s after rollout of deployment/checkout to images a:1, b:2",
        ),
        (ANOMALY_MS - 119_999, (), "started 119 s after rollout of deployment/checkout"),
        (
            ANOMALY_MS - (2 * 3600 + 5 * 60 + 59) * 1000,
            ("x:1",),
            "started 2 h 5 min after rollout of deployment/checkout to image x:1",
        ),
        (ANOMALY_MS - 3 * 3600_000, (), "started 3 h after rollout of deployment/checkout"),
        (ANOMALY_MS + 30_000, (), "started 30 s before rollout of deployment/checkout"),
    ],
)
def test_describe_in_plain_words(started_ms, images, text):
    change = Change(
        kind="deployment",
        namespace=NS,
        name="checkout",
        started_ms=started_ms,
        images=images,
        revision="7",
    )
    assert describe(change, anomaly_start_ms=ANOMALY_MS) == text


async def test_build_api_client_from_kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    async with await build_api_client(kubeconfig=path) as api:
        assert api.configuration.host == "http://127.0.0.1:6443"
    with pytest.raises(EnrichmentError, match=r"kubeconfig .*: .*other"):
        await build_api_client(kubeconfig=path, context="prod")
    with pytest.raises(EnrichmentError, match="does not exist"):
        await build_api_client(kubeconfig=tmp_path / "missing")


async def test_build_api_client_outside_a_cluster_says_what_to_do(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(EnrichmentError, match="pass a kubeconfig"):
        await build_api_client(kubeconfig=None)
    with pytest.raises(EnrichmentError, match="without a kubeconfig"):
        await build_api_client(kubeconfig=None, context="prod")
