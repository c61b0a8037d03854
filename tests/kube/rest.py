"""REST semantics of the double (what pkg/registry/generic/registry.Store does): create,
get, list, update, patch, delete and the ``status`` / ``scale`` subresources.

* create: ``generateName``; 409 AlreadyExists; the namespace must exist (404 otherwise);
  uid, creationTimestamp, resourceVersion and (apps, batch, policy, autoscaling) generation
  set by the server; status reset as each kind's strategy does; a resourceVersion in the
  body is a 500 as upstream ("resourceVersion should not be set on objects to be created").
* update / patch: a stale ``metadata.resourceVersion`` (in a PUT body or a patch result) or a
  different uid is a 409 Conflict; writes through the main resource keep the old status and
  writes through ``/status`` keep everything but the status; generation goes up when the
  spec changes (and, for Deployments, the annotations, as upstream); a write that changes
  nothing keeps the resourceVersion and emits no event.
* delete: ``preconditions`` (uid, resourceVersion) give 409; objects with finalizers get a
  deletionTimestamp and stay until their finalizers are removed; pods come back as the
  deleted Pod, everything else as a Status. ``propagationPolicy`` is validated but there is
  no garbage collector, and no kubelet: a graceful pod deletion completes at once (the
  returned pod carries deletionTimestamp and deletionGracePeriodSeconds as upstream's does).
  Deleting a namespace deletes its contents at once.
* ``dryRun=All`` on any write runs every check and returns the would-be object; nothing is
  stored (a dry-run create has no resourceVersion, a dry-run update keeps the old one).
"""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tests.kube import defaults, patching
from tests.kube.resources import BY_KEY, RESOURCES, ResourceType
from tests.kube.schema import zero_status
from tests.kube.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_string,
)
from tests.kube.status import (
    FieldError,
    already_exists,
    bad_request,
    conflict,
    delete_precondition_failed,
    internal,
    invalid,
    not_found,
    stale,
    success,
)
from tests.kube.store import Obj, Store, name_of, ns_of
from tests.kube.validation import Admission

NAMESPACES = BY_KEY[("", "namespaces")]
PODS = BY_KEY[("", "pods")]
_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def timestamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _qos(spec: dict[str, Any]) -> str:
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    res = [c.get("resources") or {} for c in containers]
    if not any((r.get("requests") or r.get("limits")) for r in res):
        return "BestEffort"
    for r in res:
        limits = r.get("limits") or {}
        requests = {**limits, **(r.get("requests") or {})}
        if any(
            limits.get(k) is None or requests.get(k) != limits.get(k) for k in ("cpu", "memory")
        ):
            return "Burstable"
    return "Guaranteed"


def _reset_status_on_create(rt: ResourceType, obj: Obj) -> None:
    if rt.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": _qos(obj.get("spec") or {})}
    elif rt.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif "status" in rt.subresources and rt.kind != "Node":
        obj["status"] = {}


def _spec_changed(rt: ResourceType, old: Obj, new: Obj) -> bool:
    if old.get("spec") != new.get("spec"):
        return True
    if rt.kind == "Deployment":
        return bool(
            (old["metadata"].get("annotations") or {}) != (new["metadata"].get("annotations") or {})
        )
    return False


def _without_rv(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"].pop("resourceVersion", None)
    return out


class Rest:
    def __init__(self, store: Store, admission: Admission, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.admission = admission
        self.clock = clock
        self.service_account_controller = True

    @property
    def schema_version(self) -> str:
        return self.admission.schema_version

    # --- reads -----------------------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(rt, ns, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def list_collection(
        self,
        rt: ResourceType,
        ns: str | None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        cont: str = "",
    ) -> Obj:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt)
        items = [
            o
            for o in self.store.select(rt, ns or None)
            if labels_match(labels, o) and fields_match(fields, o)
        ]
        meta: dict[str, Any] = {"resourceVersion": self.store.resource_version}
        if cont:
            after = _decode_continue(cont)
            items = [o for o in items if (ns_of(o), name_of(o)) > after]
        if limit and len(items) > limit:
            last = items[limit - 1]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps([ns_of(last), name_of(last)]).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        for o in items:  # typed list items carry no kind/apiVersion on the wire
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }

    # --- create ----------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        ns: str,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> tuple[Obj, list[str]]:
        obj, warnings = self.admission.decode(rt.kind, rt.api_version, body, field_validation)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_GEN_CHARS, k=5))
        if not meta.get("name"):
            raise invalid(rt.kind, rt.group, "", [_required_name()])
        if meta.get("resourceVersion"):
            raise internal("resourceVersion should not be set on objects to be created")
        uid = str(uuid.uuid4())
        meta.update(uid=uid, creationTimestamp=timestamp(self.clock()))
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        if rt.generation:
            meta["generation"] = 1
        _reset_status_on_create(rt, obj)
        if rt.kind == "Job":
            defaults.job_selector(obj, uid)
        defaults.apply_defaults(obj)
        zero_status(self.schema_version, obj)
        self.admission.validate(rt, obj)
        if rt.namespaced and self.store.get(NAMESPACES, "", ns) is None:
            raise not_found(NAMESPACES, ns)
        if self.store.get(rt, ns, meta["name"]) is not None:
            raise already_exists(rt, meta["name"])
        if dry_run:
            return obj, warnings
        stored = self.store.put(rt, obj, None)
        if rt.kind == "Namespace" and self.service_account_controller:
            # what the serviceaccounts controller does at once on a real cluster
            self.create(
                BY_KEY[("", "serviceaccounts")], meta["name"], {"metadata": {"name": "default"}}
            )
        return stored, warnings

    # --- update / patch --------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> tuple[Obj, list[str]]:
        new, warnings = self.admission.decode(rt.kind, rt.api_version, body, field_validation)
        meta = new.setdefault("metadata", {})
        if meta.get("name") != name:
            raise bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match "
                f"the name on the URL ({name})"
            )
        if rt.namespaced and meta.get("namespace") not in (None, "", ns):
            raise bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        old = self.get(rt, ns, name)
        self._preconditions(rt, old, meta)
        return self._write(rt, old, new, subresource, dry_run), warnings

    def patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> tuple[Obj, list[str]]:
        old = self.get(rt, ns, name)
        patched = patching.apply_patch(self.schema_version, content_type, old, body)
        new, warnings = self.admission.decode(
            rt.kind, rt.api_version, patched, field_validation, prefix=False
        )
        meta = new.setdefault("metadata", {})
        if meta.get("name") != name or (rt.namespaced and meta.get("namespace") != ns):
            raise bad_request("metadata.name and metadata.namespace cannot be changed by a patch")
        self._preconditions(rt, old, meta)
        return self._write(rt, old, new, subresource, dry_run), warnings

    def _preconditions(self, rt: ResourceType, old: Obj, meta: dict[str, Any]) -> None:
        rv, uid = meta.get("resourceVersion"), meta.get("uid")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise stale(rt, name_of(old))
        if uid and uid != old["metadata"]["uid"]:
            raise conflict(
                rt,
                name_of(old),
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )

    def _write(
        self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None, dry_run: bool
    ) -> Obj:
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            new["status"] = status if status is not None else {}
        elif "status" in rt.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta, old_meta = new["metadata"], old["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if not rt.namespaced:
            meta.pop("namespace", None)
        defaults.apply_defaults(new)
        zero_status(self.schema_version, new)
        self.admission.validate(rt, new, old)
        if rt.generation and _spec_changed(rt, old, new):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if _without_rv(new) == _without_rv(old):
            return old
        if dry_run:
            return new
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self.store.remove(rt, new)
        return self.store.put(rt, new, old)

    # --- delete ----------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        options: dict[str, Any],
        *,
        dry_run: bool = False,
    ) -> tuple[int, Obj]:
        obj = self.get(rt, ns, name)
        policy = options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise invalid("DeleteOptions", "meta.k8s.io", "", [_unsupported_policy(policy)])
        pre = options.get("preconditions") or {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise delete_precondition_failed(
                rt,
                name,
                f"the UID in the precondition ({pre['uid']}) does not match the UID "
                f"in record ({meta['uid']}). The object might have been deleted and "
                f"then recreated",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise delete_precondition_failed(
                rt,
                name,
                f"the ResourceVersion in the precondition ({pre['resourceVersion']}) "
                f"does not match the ResourceVersion in record "
                f"({meta['resourceVersion']}). The object might have been modified",
            )
        now = self.clock()
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = timestamp(now)
                meta["deletionGracePeriodSeconds"] = 0
                if not dry_run:
                    obj = self.store.put(rt, obj, self.get(rt, ns, name))
            return 200, obj
        if rt.kind == "Pod":
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            phase = (obj.get("status") or {}).get("phase")
            if (
                (obj.get("spec") or {}).get("nodeName")
                and grace
                and phase not in ("Succeeded", "Failed")
            ):
                meta["deletionTimestamp"] = timestamp(now + timedelta(seconds=int(grace)))
                meta["deletionGracePeriodSeconds"] = int(grace)
        if rt.kind == "Namespace":
            meta["deletionTimestamp"] = timestamp(now)
            obj.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            gone = obj
        else:
            if rt.kind == "Namespace":
                self._empty_namespace(name)
            gone = self.store.remove(rt, obj)
        if rt.kind in ("Pod", "Namespace"):
            return 200, gone
        details = {
            "name": name,
            **({"group": rt.group} if rt.group else {}),
            "kind": rt.plural,
            "uid": meta["uid"],
        }
        return 200, success(details=details)

    def _empty_namespace(self, ns: str) -> None:
        for rt in RESOURCES:
            if rt.namespaced:
                for obj in self.store.select(rt, ns):
                    self.store.remove(rt, obj)

    # --- scale -----------------------------------------------------------------------------

    def scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 0))},
            "status": {
                "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                "selector": selector_string((obj.get("spec") or {}).get("selector")),
            },
        }

    def get_scale(self, rt: ResourceType, ns: str, name: str) -> Obj:
        return self.scale_of(rt, self.get(rt, ns, name))

    def update_scale(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Strict",
        prefix: bool = True,
    ) -> tuple[Obj, list[str]]:
        scale, warnings = self.admission.decode(
            "Scale", "autoscaling/v1", body, field_validation, prefix=prefix
        )
        meta = scale.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the "
                f"name on the URL ({name})"
            )
        old = self.get(rt, ns, name)
        self._preconditions(rt, old, meta)
        replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        if replicas < 0:
            raise invalid(
                "Scale",
                "autoscaling",
                name,
                [_invalid_field("spec.replicas", replicas, "must be greater than or equal to 0")],
            )
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = replicas
        return self.scale_of(rt, self._write(rt, old, new, None, dry_run)), warnings

    def patch_scale(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> tuple[Obj, list[str]]:
        current = self.get_scale(rt, ns, name)
        patched = patching.apply_patch(self.schema_version, content_type, current, body)
        return self.update_scale(
            rt, ns, name, patched, dry_run=dry_run, field_validation=field_validation, prefix=False
        )


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        ns, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(ns), str(name)
    except (ValueError, TypeError) as e:
        raise bad_request(f"continue key is not valid: {e}") from e


def _required_name() -> FieldError:
    return FieldError(
        "metadata.name", "FieldValueRequired", "Required value: name or generateName is required"
    )


def _invalid_field(field: str, value: Any, why: str) -> FieldError:
    return FieldError(field, "FieldValueInvalid", f"Invalid value: {value}: {why}")


def _unsupported_policy(policy: Any) -> FieldError:
    return FieldError(
        "propagationPolicy",
        "FieldValueNotSupported",
        f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"',
    )
