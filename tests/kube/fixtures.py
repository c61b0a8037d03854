"""pytest fixtures for the Kubernetes API double (or a real cluster).

``kube_api`` yields a :class:`KubeApi`:

* ``url``: the API server's base URL;
* ``double``: the :class:`~tests.kube.apiserver.ApiServerDouble`, or ``None`` when the
  environment variable ``VIGIL_KUBECONFIG`` names a kubeconfig (then a real cluster is used);
* ``namespace``: a fresh ``vigil-test-xxxxxxxx`` namespace, deleted afterwards;
* ``await api_client()``: a new kubernetes_asyncio ``ApiClient`` (``Configuration(host=url)``
  for the double, the kubeconfig's configuration otherwise), closed at teardown.

``kube_double`` is the same but always the double, for tests of double-only helpers.
Other test packages use them with ``from tests.kube.fixtures import kube_api  # noqa: F401``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiClient, Configuration

from tests.kube.apiserver import ApiServerDouble

KUBECONFIG_ENV = "VIGIL_KUBECONFIG"
ON_DOUBLE = not os.environ.get(KUBECONFIG_ENV)


def divergence(reason: str) -> pytest.MarkDecorator:
    """A known difference between the double and kube-apiserver: a strict expected failure
    on the double, a plain test against a real cluster."""
    return pytest.mark.xfail(ON_DOUBLE, reason=f"API double divergence: {reason}", strict=True)


@dataclass
class KubeApi:
    url: str
    double: ApiServerDouble | None
    namespace: str
    configuration: Configuration
    _clients: list[ApiClient] = field(default_factory=list)

    async def api_client(self) -> ApiClient:
        api = ApiClient(configuration=self.configuration)
        self._clients.append(api)
        return api

    async def close(self) -> None:
        while self._clients:
            await self._clients.pop().close()


def _namespace() -> str:
    return f"vigil-test-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def _double_api() -> AsyncIterator[KubeApi]:
    double = ApiServerDouble()
    ns = _namespace()
    double.seed_namespace(ns)
    async with double.serve() as url:
        kube = KubeApi(url, double, ns, Configuration(host=url))
        try:
            yield kube
        finally:
            await kube.close()


async def _default_service_account(core: client.CoreV1Api, ns: str) -> None:
    """Pods cannot be created in a namespace until its controller made the "default"
    ServiceAccount; wait for it (on the list's resourceVersion, by watch)."""
    async with asyncio.timeout(60):
        while True:
            accounts = await core.list_namespaced_service_account(
                ns, field_selector="metadata.name=default"
            )
            if accounts.items:
                return
            async with watch.Watch() as w:
                async for _ in w.stream(
                    core.list_namespaced_service_account,
                    ns,
                    field_selector="metadata.name=default",
                    resource_version=accounts.metadata.resource_version,
                    timeout_seconds=10,
                ):
                    break


@asynccontextmanager
async def _cluster_api(kubeconfig: str) -> AsyncIterator[KubeApi]:
    cfg = Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    ns = _namespace()
    kube = KubeApi(str(cfg.host), None, ns, cfg)
    core = client.CoreV1Api(await kube.api_client())
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        await _default_service_account(core, ns)
        yield kube
    finally:
        try:
            await core.delete_namespace(ns)
        finally:
            await kube.close()


@pytest.fixture
async def kube_api() -> AsyncIterator[KubeApi]:
    kubeconfig = os.environ.get(KUBECONFIG_ENV)
    async with _cluster_api(kubeconfig) if kubeconfig else _double_api() as kube:
        yield kube


@pytest.fixture
async def kube_double() -> AsyncIterator[KubeApi]:
    async with _double_api() as kube:
        yield kube
