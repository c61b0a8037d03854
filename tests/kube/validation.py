"""Admission of a request body: decoding (with ``fieldValidation``), schema validation and
the handful of semantic checks from pkg/apis/*/validation the schema cannot express.

Decoding follows the real server: an unknown field is a 400 BadRequest
(``strict decoding error: unknown field "spec.foo"``) under ``fieldValidation=Strict``, and
is dropped with a ``Warning`` header under ``Warn`` (the real default since 1.23) or silently
under ``Ignore``. **The double's default is Strict**, so a typo in a body Vigil sends fails
loudly instead of vanishing; pass ``default_field_validation="Warn"`` for the real default.
A wrong JSON type is a 400 too. Everything else the strict schema rejects (required fields,
enums...) and the semantic checks below are a 422 Invalid naming each field.

Semantic checks reproduced: object names (RFC 1123), label keys and values, annotation keys;
pod specs (containers present, container names unique RFC 1123 labels, ``image`` required,
restartPolicy allowed for the workload); workload selectors non-empty and matching the
template labels, selectors immutable; replicas >= 0; a PDB not setting both minAvailable and
maxUnavailable; lease durations > 0; pod specs immutable except the fields upstream allows.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from tests.kube import schema as sch
from tests.kube.resources import WORKLOAD_KINDS, ResourceType
from tests.kube.selectors import LABEL_VALUE, selector_matches
from tests.kube.status import FieldError, bad_request, invalid

FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
    "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
    "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric "
    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
    "previously negative)"
)


def _v(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _invalid(field: str, value: Any, why: str) -> FieldError:
    return FieldError(field, "FieldValueInvalid", f"Invalid value: {_v(value)}: {why}")


class Admission:
    def __init__(self, kubernetes_version: str, default_field_validation: str) -> None:
        if default_field_validation not in FIELD_VALIDATION:
            raise ValueError(f"field validation must be one of {FIELD_VALIDATION}")
        self.schema_version = sch.schema_version(kubernetes_version)
        self.default_field_validation = default_field_validation

    # --- decoding --------------------------------------------------------------------------

    def field_validation(self, query: str | None) -> str:
        if not query:
            return self.default_field_validation
        if query not in FIELD_VALIDATION:
            raise bad_request(
                f'fieldValidation must be one of "Ignore", "Warn", "Strict": got "{query}"'
            )
        return query

    def decode(
        self, kind: str, api_version: str, body: Any, field_validation: str, *, prefix: bool = True
    ) -> tuple[dict[str, Any], list[str]]:
        """Type-check ``body`` as ``kind``; return it (unknown fields dropped unless Strict)
        and the warnings to send back."""
        lead = (
            f'{kind} in version "{api_version.split("/")[-1]}" cannot be handled as a {kind}: '
            if prefix
            else ""
        )
        if not isinstance(body, dict):
            raise bad_request(
                f"{lead}json: cannot unmarshal {type(body).__name__} into Go value of type {kind}"
            )
        body.setdefault("apiVersion", api_version)
        body.setdefault("kind", kind)
        if body["apiVersion"] != api_version or body["kind"] != kind:
            raise bad_request(
                f"the API version in the data ({body['apiVersion']}) does not "
                f"match the expected API version ({api_version})"
                if body["apiVersion"] != api_version
                else f"{lead}the kind in the data ({body['kind']}) does not match "
                f"the expected kind ({kind})"
            )
        errors = sch.check(self.schema_version, body)
        if errors.unknown and field_validation == "Strict":
            unknown = ", ".join(f'unknown field "{p}"' for p in errors.unknown)
            raise bad_request(f"{lead}strict decoding error: {unknown}")
        if errors.type_errors:
            raise bad_request(lead + errors.type_errors[0])
        warnings: list[str] = []
        if errors.unknown:
            root = sch.kind_schema(self.schema_version, kind, api_version)
            sch.prune_unknown(self.schema_version, root, body)
            if field_validation == "Warn":
                warnings = [f'unknown field "{p}"' for p in errors.unknown]
        return body, warnings

    # --- validation ------------------------------------------------------------------------

    def validate(
        self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> None:
        """422 Invalid for schema violations left after decoding and semantic errors."""
        errors = list(sch.check(self.schema_version, obj).fields)
        errors += semantic(rt, obj, old)
        if errors:
            name = (obj.get("metadata") or {}).get("name", "")
            raise invalid(rt.kind, rt.group, name, errors)

    def validate_kind(self, kind: str, group: str, obj: dict[str, Any]) -> None:
        errors = sch.check(self.schema_version, obj).fields
        if errors:
            raise invalid(kind, group, (obj.get("metadata") or {}).get("name", ""), errors)


def _meta(rt: ResourceType, meta: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = meta.get("name") or ""
    if rt.kind == "Namespace":
        if not _DNS_LABEL.match(name) or len(name) > 63:
            errors.append(_invalid("metadata.name", name, _LABEL_MSG))
    elif name and (not _DNS_SUBDOMAIN.match(name) or len(name) > 253):
        errors.append(_invalid("metadata.name", name, _SUBDOMAIN_MSG))
    for key, value in (meta.get("labels") or {}).items():
        if not _QUALIFIED_NAME.match(key):
            errors.append(
                _invalid(
                    "metadata.labels",
                    key,
                    "name part must consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            errors.append(_invalid("metadata.labels", value, _LABEL_VALUE_MSG))
    for key in meta.get("annotations") or {}:
        if not _QUALIFIED_NAME.match(key):
            errors.append(
                _invalid(
                    "metadata.annotations",
                    key,
                    "name part must consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
    return errors


def _pod_spec(spec: dict[str, Any], path: str, kind: str) -> list[FieldError]:
    errors: list[FieldError] = []
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError(f"{path}.containers", "FieldValueRequired", "Required value"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            cpath = f"{path}.{key}[{i}]"
            name = c.get("name") or ""
            if name and not _DNS_LABEL.match(name):
                errors.append(_invalid(f"{cpath}.name", name, _LABEL_MSG))
            if name in seen:
                errors.append(
                    FieldError(
                        f"{cpath}.name", "FieldValueDuplicate", f"Duplicate value: {_v(name)}"
                    )
                )
            seen.add(name)
            if not c.get("image"):
                errors.append(FieldError(f"{cpath}.image", "FieldValueRequired", "Required value"))
    policy = spec.get("restartPolicy")
    if kind == "Job" and policy not in ("OnFailure", "Never"):
        errors.append(
            FieldError(
                f"{path}.restartPolicy",
                "FieldValueRequired",
                'Required value: valid values: "OnFailure", "Never"',
            )
        )
    elif kind in WORKLOAD_KINDS - {"Job"} and policy != "Always":
        errors.append(
            FieldError(
                f"{path}.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: {_v(policy)}: supported values: "Always"',
            )
        )
    return errors


def _workload(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = obj.get("spec") or {}
    tmpl = spec.get("template") or {}
    errors += _meta_template(tmpl)
    errors += _pod_spec(tmpl.get("spec") or {}, "spec.template.spec", obj["kind"])
    selector = spec.get("selector")
    if obj["kind"] != "Job" or selector is not None:
        if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errors.append(
                _invalid(
                    "spec.selector",
                    selector or {},
                    f"empty selector is invalid for {obj['kind'].lower()}",
                )
            )
        elif not selector_matches(selector, (tmpl.get("metadata") or {}).get("labels") or {}):
            errors.append(
                _invalid(
                    "spec.template.metadata.labels",
                    (tmpl.get("metadata") or {}).get("labels") or {},
                    "`selector` does not match template `labels`",
                )
            )
    if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
        errors.append(
            _invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0")
        )
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("selector") != spec.get("selector"):
            errors.append(_invalid("spec.selector", spec.get("selector"), "field is immutable"))
        if obj["kind"] == "Job" and old_spec.get("template") != spec.get("template"):
            errors.append(_invalid("spec.template", spec.get("template"), "field is immutable"))
    return errors


def _meta_template(tmpl: dict[str, Any]) -> list[FieldError]:
    errors = []
    for key, value in ((tmpl.get("metadata") or {}).get("labels") or {}).items():
        if not _QUALIFIED_NAME.match(key) or not LABEL_VALUE.match(str(value)):
            errors.append(_invalid("spec.template.metadata.labels", {key: value}, _LABEL_VALUE_MSG))
    return errors


def _mask_pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    masked = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for c in masked.get(key) or []:
            c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        masked.pop(key, None)
    return masked


def semantic(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    errors = _meta(rt, obj.get("metadata") or {})
    kind = rt.kind
    spec = obj.get("spec") or {}
    if kind == "Pod":
        errors += _pod_spec(spec, "spec", kind)
        if old is not None and _mask_pod_spec(spec) != _mask_pod_spec(old.get("spec") or {}):
            errors.append(
                FieldError("spec", "FieldValueForbidden", f"Forbidden: {_POD_UPDATE_MSG}")
            )
    elif kind in WORKLOAD_KINDS:
        errors += _workload(obj, old)
    elif kind == "PodDisruptionBudget":
        if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
            errors.append(
                _invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")
            )
    elif kind == "Lease":
        for key in ("leaseDurationSeconds", "leaseTransitions"):
            value = spec.get(key)
            if isinstance(value, int) and value < (1 if key == "leaseDurationSeconds" else 0):
                bound = (
                    "greater than 0"
                    if key == "leaseDurationSeconds"
                    else "greater than or equal to 0"
                )
                errors.append(_invalid(f"spec.{key}", value, f"must be {bound}"))
    return errors
