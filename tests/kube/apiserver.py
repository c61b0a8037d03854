"""An in-process Kubernetes API server double for Vigil's tests: an aiohttp application that
answers kubernetes-asyncio the way kube-apiserver does for the resources in
:mod:`tests.kube.resources`, and :class:`ApiServerDouble`, which owns the state, seeds
objects and keeps a log of the requests it served.

Layout: :mod:`~tests.kube.store` (objects, resourceVersions, watch history),
:mod:`~tests.kube.rest` (create/update/patch/delete, status and scale),
:mod:`~tests.kube.eviction`, :mod:`~tests.kube.patching`, :mod:`~tests.kube.selectors`,
:mod:`~tests.kube.validation` / :mod:`~tests.kube.schema` (kubernetes-validate's schemas),
:mod:`~tests.kube.defaults`, :mod:`~tests.kube.seed` (controller-made objects on demand).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from tests.kube import eviction, resources
from tests.kube.resources import BY_KIND, BY_PATH, ResourceType
from tests.kube.rest import Rest
from tests.kube.seed import Seeder
from tests.kube.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from tests.kube.status import ApiError, bad_request, method_not_allowed
from tests.kube.store import Event, Obj, Store
from tests.kube.validation import Admission

_TRUE = ("1", "t", "T", "true", "True", "TRUE")


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


class RequestRecord(NamedTuple):
    """One resource request, in RBAC's terms (verb as RBAC names it)."""

    verb: str
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    dry_run: bool


@dataclass
class _Fault:
    verb: str | None
    resource: str | None
    subresource: str | None
    name: str | None
    error: ApiError | None  # None: a delay only
    times: int
    delay_s: float = 0.0  # before answering (or applying): a slow API server


_DELAY = web.RequestKey("vigil_delay_s", float)  # seconds to hold the answer (inject_delay)


@dataclass
class _Route:
    rt: ResourceType
    namespace: str
    name: str
    subresource: str


def _dry_run(request: web.Request, body_options: dict[str, Any] | None = None) -> bool:
    values = request.query.getall("dryRun", [])
    values += list((body_options or {}).get("dryRun") or [])
    for v in values:
        if v != "All":
            raise bad_request(f'Invalid dryRun value: "{v}": supported values: "All"')
    return bool(values)


def _int(query: Any, key: str) -> int:
    try:
        return int(query.get(key) or 0)
    except ValueError as e:
        raise bad_request(f"{key}: invalid integer {query.get(key)!r}") from e


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad_request(f"couldn't get version/kind; json parse error: {e}") from e


class ApiServerDouble(Seeder):
    """State and HTTP face of the double. ``await double.serve()`` style use::

    async with double.serve() as url:
        client = ApiClient(Configuration(host=url))
    """

    def __init__(
        self,
        *,
        kubernetes_version: str = "1.32",
        default_field_validation: str = "Strict",
        clock: Callable[[], datetime] | None = None,
        first_resource_version: int = 1000,
        history_limit: int = 1000,
        namespaces: tuple[str, ...] = ("default", "kube-system"),
        default_service_accounts: bool = True,
    ) -> None:
        self.kubernetes_version = kubernetes_version
        self.clock = clock or (lambda: datetime.now(UTC))
        self.store = Store(first_resource_version, history_limit)
        self.admission = Admission(kubernetes_version, default_field_validation)
        self.rest = Rest(self.store, self.admission, self.clock)
        self.rest.service_account_controller = default_service_accounts
        self.requests: list[RequestRecord] = []
        self.nonresource_requests: list[str] = []
        self._faults: list[_Fault] = []
        self.delayed = 0  # requests being held by inject_delay now
        self.none_held = asyncio.Event()  # set while no answer is held
        self.none_held.set()
        self.url = ""
        for ns in namespaces:
            self.seed_namespace(ns)

    # --- request log and faults ----------------------------------------------------------

    def clear_requests(self) -> None:
        self.requests.clear()
        self.nonresource_requests.clear()

    def rbac_rules(self) -> dict[tuple[str, str], set[str]]:
        """(apiGroup, resource or resource/subresource) -> verbs used, from the request log."""
        out: dict[tuple[str, str], set[str]] = {}
        for r in self.requests:
            res = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
            out.setdefault((r.group, res), set()).add(r.verb)
        return out

    def inject_error(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        verb: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with this Status; nothing is
        applied (the request is logged)."""
        self._faults.append(
            _Fault(verb, resource, subresource, name, ApiError(code, reason, message), times)
        )

    def inject_delay(
        self,
        delay_s: float,
        *,
        verb: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
        times: int = 1,
    ) -> None:
        """Handle the next ``times`` matching requests as usual (a write is applied), then
        hold their answers ``delay_s``: a slow API server the client may give up on."""
        self._faults.append(_Fault(verb, resource, subresource, name, None, times, delay_s))

    def _fault(self, rec: RequestRecord) -> _Fault | None:
        for f in self._faults:
            if (
                f.times > 0
                and f.verb in (None, rec.verb)
                and f.resource in (None, rec.resource)
                and f.subresource in (None, rec.subresource)
                and f.name in (None, rec.name)
            ):
                f.times -= 1
                return f
        return None

    def compact(self) -> None:
        """Drop the watch history (as etcd compaction): older RVs now get 410."""
        self.store.compact()

    # --- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)

        async def on_shutdown(_: web.Application) -> None:
            self.store.close_watches()

        app.on_shutdown.append(on_shutdown)
        return app

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1") -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL."""
        server = TestServer(self.app(), host=host, port=0)
        await server.start_server(shutdown_timeout=1.0)
        self.url = str(server.make_url("")).rstrip("/")
        try:
            yield self.url
        finally:
            self.store.close_watches()
            await server.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await self._dispatch(request)
        except ApiError as e:
            resp = web.json_response(e.body(), status=e.code, headers=e.headers or None)
        if request.get(_DELAY):  # an injected slow answer: handled (applied), then held
            self.delayed += 1
            self.none_held.clear()
            try:
                await asyncio.sleep(request[_DELAY])
            finally:
                self.delayed -= 1
                if not self.delayed:
                    self.none_held.set()
        return resp

    def _nonresource(self, path: str) -> Any:
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return resources.version_info(self.kubernetes_version)
        if parts == ["api"]:
            return resources.api_versions(self.url.split("//")[-1])
        if parts == ["apis"]:
            return resources.api_group_list()
        if len(parts) == 2 and parts[0] == "apis":
            return resources.api_group(parts[1])
        if parts[:1] == ["api"] and len(parts) == 2:
            return resources.resource_list("", parts[1])
        if parts[:1] == ["apis"] and len(parts) == 3:
            return resources.resource_list(parts[1], parts[2])
        return None

    def _route(self, path: str) -> tuple[str, str, list[str]] | None:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            return "", parts[1], parts[2:]
        if parts[:1] == ["apis"] and len(parts) >= 4:
            return parts[1], parts[2], parts[3:]
        return None

    def _resolve(self, group: str, version: str, rest: list[str]) -> _Route:
        namespace = ""
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise _not_found()
        rt = BY_PATH.get((group, version, rest[0]))
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if (
            rt is None
            or (sub and sub not in rt.subresources)
            or (not rt.namespaced and namespace)
            or (rt.namespaced and name and not namespace)
        ):
            raise _not_found()
        return _Route(rt, namespace, name, sub)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path, method, q = request.path, request.method, request.query
        if method == "GET" and (doc := self._nonresource(path)) is not None:
            self.nonresource_requests.append(path)
            return web.json_response(doc)
        parsed = self._route(path)
        if parsed is None:
            self.nonresource_requests.append(path)
            return web.Response(status=404, text="404 page not found\n")
        r = self._resolve(*parsed)
        watch = method == "GET" and not r.name and q.get("watch", "") in _TRUE
        verb = {
            "GET": "watch" if watch else ("get" if r.name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if r.name else "deletecollection",
        }.get(method, method.lower())
        body = await _body(request) if method in ("POST", "PUT", "PATCH", "DELETE") else None
        options = body if method == "DELETE" and isinstance(body, dict) else None
        rec = RequestRecord(
            verb,
            r.rt.group,
            r.rt.version,
            r.rt.plural,
            r.subresource,
            r.namespace,
            r.name,
            "All" in q.getall("dryRun", []) or "All" in ((options or {}).get("dryRun") or []),
        )
        self.requests.append(rec)
        if (fault := self._fault(rec)) is not None:
            request[_DELAY] = fault.delay_s
            if fault.error is not None:
                raise fault.error
        if watch:
            return await self._watch(request, r)
        status, out, warnings = self._call(request, r, verb, body, options)
        headers: CIMultiDict[str] = CIMultiDict()
        for w in warnings:
            headers.add("Warning", f"299 - {json.dumps(w)}")
        return web.json_response(out, status=status, headers=headers)

    def _call(
        self, request: web.Request, r: _Route, verb: str, body: Any, options: dict[str, Any] | None
    ) -> tuple[int, Obj, list[str]]:
        q, rest, rt, ns, name, sub = (
            request.query,
            self.rest,
            r.rt,
            r.namespace,
            r.name,
            r.subresource,
        )
        fv = self.admission.field_validation(q.get("fieldValidation"))
        ctype = request.headers.get("Content-Type", "application/json")
        if verb == "list":
            return (
                200,
                rest.list_collection(
                    rt,
                    ns,
                    q.get("labelSelector", ""),
                    q.get("fieldSelector", ""),
                    _int(q, "limit"),
                    q.get("continue", ""),
                ),
                [],
            )
        if verb == "get":
            if sub == "scale":
                return 200, rest.get_scale(rt, ns, name), []
            if sub == "eviction":
                raise method_not_allowed()
            return 200, rest.get(rt, ns, name), []
        dry_run = _dry_run(request, options)
        if verb == "create" and not name:
            obj, warnings = rest.create(rt, ns, body, dry_run=dry_run, field_validation=fv)
            return 201, obj, warnings
        if verb == "create" and sub == "eviction":
            out = eviction.evict(rest, ns, name, body, dry_run=dry_run, field_validation=fv)
            return 201, out, []
        if verb in ("update", "patch") and name and sub != "eviction":
            if sub == "scale":
                obj, warnings = (
                    rest.update_scale(rt, ns, name, body, dry_run=dry_run, field_validation=fv)
                    if verb == "update"
                    else rest.patch_scale(
                        rt, ns, name, ctype, body, dry_run=dry_run, field_validation=fv
                    )
                )
            elif verb == "update":
                obj, warnings = rest.update(
                    rt,
                    ns,
                    name,
                    body,
                    subresource=sub or None,
                    dry_run=dry_run,
                    field_validation=fv,
                )
            else:
                obj, warnings = rest.patch(
                    rt,
                    ns,
                    name,
                    ctype,
                    body,
                    subresource=sub or None,
                    dry_run=dry_run,
                    field_validation=fv,
                )
            return 200, obj, warnings
        if verb == "delete" and not sub:
            opts = dict(options or {})
            for key in ("propagationPolicy", "gracePeriodSeconds"):
                if key in q:
                    opts[key] = _int(q, key) if key == "gracePeriodSeconds" else q[key]
            code, out = rest.delete(rt, ns, name, opts, dry_run=dry_run)
            return code, out, []
        raise method_not_allowed()

    # --- watch -----------------------------------------------------------------------------

    async def _watch(self, request: web.Request, r: _Route) -> web.StreamResponse:
        q = request.query
        labels = parse_label_selector(q.get("labelSelector", ""))
        fields = parse_field_selector(q.get("fieldSelector", ""), r.rt)
        timeout = float(_int(q, "timeoutSeconds")) if q.get("timeoutSeconds") else None
        rv = q.get("resourceVersion", "")

        def match(obj: Obj | None) -> bool:
            return obj is not None and labels_match(labels, obj) and fields_match(fields, obj)

        def translate(e: Event) -> tuple[str, Obj] | None:
            if e.key != r.rt.key or (r.namespace and e.namespace != r.namespace):
                return None
            now, before = match(e.obj), match(e.old)
            if e.type == "MODIFIED":
                kind = {
                    (True, True): "MODIFIED",
                    (True, False): "ADDED",
                    (False, True): "DELETED",
                }.get((now, before))
                return (kind, e.obj) if kind else None
            return (e.type, e.obj) if now else None

        queue = self.store.subscribe()
        try:
            backlog: list[tuple[str, Obj]] = []
            error: ApiError | None = None
            if rv in ("", "0"):
                backlog = [
                    ("ADDED", {"kind": r.rt.kind, "apiVersion": r.rt.api_version, **o})
                    for o in self.store.select(r.rt, r.namespace or None)
                    if match(o)
                ]
            else:
                if not rv.isdigit():
                    raise bad_request(f'invalid resource version "{rv}"')
                try:
                    backlog = [
                        t
                        for e in self.store.events_since(int(rv))
                        if (t := translate(e)) is not None
                    ]
                except ApiError as e:
                    error = e
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            if error is not None:
                await self._send(resp, "ERROR", error.body())
                await resp.write_eof()
                return resp
            for kind, obj in backlog:
                await self._send(resp, kind, obj)
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            await self._stream(resp, queue, translate, deadline)
            with suppress(ConnectionError):
                await resp.write_eof()
            return resp
        finally:
            self.store.unsubscribe(queue)

    async def _stream(
        self,
        resp: web.StreamResponse,
        queue: asyncio.Queue[Event | None],
        translate: Callable[[Event], tuple[str, Obj] | None],
        deadline: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    event = await queue.get()
            except TimeoutError:
                return
            if event is None:
                return
            if (out := translate(event)) is not None:
                try:
                    await self._send(resp, *out)
                except ConnectionError:
                    return

    @staticmethod
    async def _send(resp: web.StreamResponse, kind: str, obj: Obj) -> None:
        await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    # --- direct access (no request log) ------------------------------------------------------

    def resource(self, kind: str) -> ResourceType:
        return BY_KIND[kind]

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.store.get(BY_KIND[kind], namespace, name)

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.select(BY_KIND[kind], namespace)
