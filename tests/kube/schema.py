"""The official OpenAPI schemas that ``kubernetes-validate`` ships, used three ways:

* strict validation of every object the double stores (``kubernetes_validate`` loads its
  strict schema files the same way; validators are cached here because its ``validate()``
  re-reads the 1.3 MB definitions file on every call);
* the strategic-merge-patch metadata (``x-kubernetes-patch-strategy`` /
  ``x-kubernetes-patch-merge-key``) that :mod:`tests.kube.patching` follows;
* dropping unknown fields when a request asks for ``fieldValidation=Warn`` or ``Ignore``.

Schema errors are sorted the way the real server reports them: unknown fields and wrong
JSON types fail decoding (400 BadRequest), everything else (required, enum, ...) is a
422 Invalid with one cause per field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import jsonschema
import referencing
from kubernetes_validate import utils as kv

from tests.kube.status import FieldError

Schema = dict[str, Any]
_DEFS = "#/$defs/"


def _vtuple(v: str) -> tuple[int, int]:
    major, minor = v.lstrip("v").split(".")[:2]
    return int(major), int(minor)


@cache
def schema_version(kubernetes_version: str) -> str:
    """The newest bundled schema set not newer than ``kubernetes_version`` (as kv does)."""
    want = _vtuple(kubernetes_version)
    found = [v for v in kv.all_versions() if _vtuple(v) <= want]
    if not found or want > _vtuple(kv.latest_version()):
        raise ValueError(
            f"kubernetes-validate {kv.__version__} has no schemas for "
            f"Kubernetes {kubernetes_version}"
        )
    return str(found[-1])


def _dir(version: str) -> str:
    return f"kubernetes-json-schema/v{version}-local-strict"


@cache
def definitions(version: str) -> Schema:
    return dict(kv.schema_contents(f"{_dir(version)}/_definitions.json", version))


@cache
def kind_schema(version: str, kind: str, api_version: str) -> Schema:
    """The top-level schema of ``kind`` (file naming as ``kubernetes_validate.validate``)."""
    gv = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return dict(kv.schema_contents(f"{_dir(version)}/{kind.lower()}-{gv}.json", version))


@cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    schema = kind_schema(version, kind, api_version)
    registry: referencing.Registry[Any] = referencing.Registry()
    registry = referencing.Resource.from_contents(schema) @ registry
    registry = referencing.Resource.from_contents(definitions(version)) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


# --- walking the schema ----------------------------------------------------------------


def resolve(version: str, schema: Schema | None) -> Schema:
    """Follow ``$ref`` to the definition (keeps nothing of the referring wrapper)."""
    seen = 0
    while schema and "$ref" in schema and seen < 20:
        ref = str(schema["$ref"])
        schema = definitions(version)["$defs"].get(ref.split(_DEFS, 1)[-1])
        seen += 1
    return schema or {}


def child(version: str, schema: Schema | None, key: str) -> Schema | None:
    """Schema of property ``key`` of an object schema (a map's value schema for maps)."""
    s = resolve(version, schema)
    props = s.get("properties") or {}
    if key in props:
        return dict(props[key])
    extra = s.get("additionalProperties")
    return dict(extra) if isinstance(extra, dict) else None


def items(version: str, schema: Schema | None) -> Schema | None:
    it = resolve(version, schema).get("items")
    return dict(it) if isinstance(it, dict) else None


def patch_meta(schema: Schema | None) -> tuple[list[str], str | None]:
    """(strategies, merge key) of a property: e.g. (["merge"], "name") for containers."""
    if not schema:
        return [], None
    strategy = str(schema.get("x-kubernetes-patch-strategy") or "")
    return [s for s in strategy.split(",") if s], schema.get("x-kubernetes-patch-merge-key")


_ZERO = {"integer": 0, "boolean": False, "string": ""}


def zero_status(version: str, obj: dict[str, Any]) -> None:
    """Fill ``status`` fields the schema requires with zero values: Go serialises those
    (non-omitempty) fields even when unset, so the real server always returns them."""
    status = obj.get("status")
    if not isinstance(status, dict):
        return
    root = kind_schema(version, str(obj.get("kind")), str(obj.get("apiVersion")))
    s = resolve(version, child(version, root, "status"))
    for name in s.get("required") or []:
        t = (s.get("properties") or {}).get(name, {}).get("type")
        t = t[0] if isinstance(t, list) else t
        if t in _ZERO:
            status.setdefault(name, _ZERO[t])


def _is_leaf(s: Schema) -> bool:
    return "oneOf" in s or "anyOf" in s


def prune_unknown(version: str, schema: Schema | None, value: Any, path: str = "") -> list[str]:
    """Delete fields the schema does not know from ``value`` in place; return their paths."""
    s = resolve(version, schema)
    dropped: list[str] = []
    if not s or _is_leaf(s):
        return dropped
    if isinstance(value, dict):
        props = s.get("properties")
        extra = s.get("additionalProperties")
        for key in list(value):
            sub_path = f"{path}.{key}" if path else key
            if props is not None and key in props:
                dropped += prune_unknown(version, props[key], value[key], sub_path)
            elif isinstance(extra, dict):
                dropped += prune_unknown(version, extra, value[key], sub_path)
            elif props is not None or extra is False:
                dropped.append(sub_path)
                del value[key]
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(value):
            dropped += prune_unknown(version, s["items"], item, f"{path}[{i}]")
    return dropped


# --- validation --------------------------------------------------------------------------


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


class SchemaErrors:
    """What strict validation found, sorted into decode errors and field errors."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.type_errors: list[str] = []
        self.fields: list[FieldError] = []


def check(version: str, obj: dict[str, Any]) -> SchemaErrors:
    kind, api_version = obj.get("kind", ""), obj.get("apiVersion", "")
    out = SchemaErrors()
    validator = _validator(version, kind, api_version)
    for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = _path(e.absolute_path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            schema = e.schema if isinstance(e.schema, dict) else {}
            known = set(schema.get("properties") or {})
            out.unknown += [f"{path}.{k}" if path else k for k in e.instance if k not in known]
        elif e.validator in ("type", "oneOf"):
            expected = e.validator_value if e.validator == "type" else "string or number"
            if isinstance(expected, list):
                expected = "/".join(t for t in expected if t != "null")
            out.type_errors.append(
                f"json: cannot unmarshal {_json_type(e.instance)} into Go struct field "
                f"{kind}.{path} of type {expected}"
            )
        elif e.validator == "required" and isinstance(e.instance, dict):
            for name in e.validator_value:
                if name not in e.instance:
                    sub = f"{path}.{name}" if path else name
                    out.fields.append(FieldError(sub, "FieldValueRequired", "Required value"))
        elif e.validator == "enum":
            supported = ", ".join(json.dumps(v) for v in e.validator_value if v is not None)
            out.fields.append(
                FieldError(
                    path,
                    "FieldValueNotSupported",
                    f"Unsupported value: {json.dumps(e.instance)}: supported values: {supported}",
                )
            )
        else:
            out.fields.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {json.dumps(e.instance)}: {e.message}",
                )
            )
    return out


def has_schema(version: str, kind: str, api_version: str) -> bool:
    try:
        kind_schema(version, kind, api_version)
    except (FileNotFoundError, kv.SchemaNotFoundError):
        return False
    return True
