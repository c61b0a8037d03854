"""The three PATCH flavours the real server accepts, chosen by Content-Type.

* ``application/json-patch+json`` (RFC 6902, ``jsonpatch``): a failing op (``test`` included)
  is a 422 whose message words it as evanphx/json-patch does;
* ``application/merge-patch+json`` (RFC 7386): maps merge, ``null`` deletes, lists replace;
* ``application/strategic-merge-patch+json``: a port of the apply side of
  k8s.io/apimachinery/pkg/util/strategicpatch (``mergeMap`` / ``mergeSlice`` /
  ``normalizeElementOrder``), with the merge strategy and merge key of each list read from the
  official OpenAPI schema (``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key``),
  the source the Go struct tags generate. So containers merge by ``name``, ports by
  ``containerPort``, volumes by ``name`` (with retainKeys), finalizers as a set, while lists
  the schema marks atomic (``tolerations``, ``args``...) are replaced, exactly as upstream.
  Directives: ``$patch: replace|delete`` (maps and list items), ``$retainKeys``,
  ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>``.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from tests.kube import schema as sch
from tests.kube.status import (
    ApiError,
    bad_request,
    internal,
    unprocessable,
    unsupported_media_type,
)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


# --- JSON patch --------------------------------------------------------------------------


def json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    out: Any = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        try:
            out = jsonpatch.JsonPatch([op]).apply(out)
        except jsonpatch.JsonPatchTestFailed as e:
            raise unprocessable(f"testing value {op['path']} failed: test failed") from e
        except jsonpatch.InvalidJsonPatch as e:
            raise bad_request(str(e)) from e
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as e:
            raise unprocessable(
                f"{op['op']} operation does not apply: doc is missing path: "
                f"{op['path']!r}: missing value"
            ) from e
    if not isinstance(out, dict):
        raise bad_request("patched object is not a JSON object")
    return out


# --- JSON merge patch ----------------------------------------------------------------------


def merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --- strategic merge patch -----------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


class _Smp:
    def __init__(self, version: str) -> None:
        self.v = version

    def strategy(self, prop: sch.Schema | None) -> tuple[str, str | None]:
        strategies, key = sch.patch_meta(prop)
        if "merge" in strategies:
            return "merge", key
        if "replace" in strategies:
            return "replace", key
        return "", key

    def merge_map(
        self, schema: sch.Schema | None, original: dict[str, Any] | None, patch: dict[str, Any]
    ) -> dict[str, Any]:
        if _DIRECTIVE in patch:
            directive = patch.pop(_DIRECTIVE)
            if directive == "replace":
                return patch
            if directive == "delete":
                return {}
            raise bad_request(f"Unknown patch type: {directive} in map: {patch}")
        original = {} if original is None else original
        self.retain_keys(original, patch)
        self.set_element_order(schema, original, patch)
        for key, pv in list(patch.items()):
            delete_list = key.startswith(_DELETE_PRIMITIVE)
            if delete_list:
                key = key[len(_DELETE_PRIMITIVE) :]
            if pv is None:
                original.pop(key, None)
                continue
            if key not in original:
                original[key] = pv
                continue
            ov = original[key]
            prop = sch.child(self.v, schema, key)
            strategy, merge_key = self.strategy(prop)
            if isinstance(ov, dict) and isinstance(pv, dict):
                original[key] = pv if strategy == "replace" else self.merge_map(prop, ov, pv)
            elif isinstance(ov, list) and isinstance(pv, list):
                original[key] = (
                    self.merge_slice(prop, ov, pv, merge_key, delete_list)
                    if strategy == "merge"
                    else pv
                )
            else:
                original[key] = pv
        return original

    def retain_keys(self, original: dict[str, Any], patch: dict[str, Any]) -> None:
        if _RETAIN not in patch:
            return
        keep = patch.pop(_RETAIN)
        if not isinstance(keep, list):
            raise bad_request("doesn't match the retainKeys format")
        for k, v in patch.items():
            if (
                v is not None
                and not k.startswith(("$deleteFromPrimitiveList", "$setElement"))
                and k not in keep
            ):
                raise bad_request("doesn't match the retainKeys format")
        for k in list(original):
            if k not in keep:
                del original[k]

    def set_element_order(
        self, schema: sch.Schema | None, original: dict[str, Any], patch: dict[str, Any]
    ) -> None:
        for key in [k for k in patch if k.startswith(_SET_ORDER)]:
            order = patch.pop(key)
            field = key[len(_SET_ORDER) :]
            if not isinstance(order, list):
                raise bad_request("invalid type for $setElementOrder list")
            orig_list, patch_list = original.get(field), patch.get(field)
            prop = sch.child(self.v, schema, field)
            strategy, merge_key = self.strategy(prop)
            if orig_list is None and patch_list is None:
                continue
            if patch_list is None:
                merged = list(orig_list or [])
            elif orig_list is None:
                merged = list(patch_list)
            else:
                merged = (
                    self.merge_slice(prop, orig_list, patch_list, merge_key, False)
                    if strategy == "merge"
                    else patch_list
                )
            in_order, server_only = _partition(merged, order, merge_key)
            original[field] = _normalize(in_order, server_only, order, orig_list or [], merge_key)
            patch.pop(field, None)

    def merge_slice(
        self,
        prop: sch.Schema | None,
        original: list[Any],
        patch: list[Any],
        merge_key: str | None,
        delete_list: bool,
    ) -> list[Any]:
        if not original and not patch:
            return original
        kinds = {type(x).__name__ for x in original + patch if x is not None}
        if "list" in kinds:
            raise unprocessable("lists of lists are not supported")
        if len(kinds - {"int", "float"}) > 1 and kinds & {"dict"}:
            raise internal(f"list element types are not identical: {[original, patch]}")
        maps = "dict" in kinds
        if not maps:
            if delete_list:
                return [x for x in original if x not in patch]
            merged = []
            for x in original + patch:
                if x not in merged:
                    merged.append(x)
            in_patch, server_only = _partition(merged, patch, None)
            return _normalize(in_patch, server_only, patch, original, None)
        if not merge_key:
            raise internal("cannot merge lists without merge key for type map")
        elem = sch.items(self.v, prop)
        original, patch = _special_elements(original, patch, merge_key)
        merged = list(original)
        for item in patch:
            if merge_key not in item:
                raise internal(f"map: {item} does not contain declared merge key: {merge_key}")
            for i, o in enumerate(merged):
                if isinstance(o, dict) and o.get(merge_key) == item[merge_key]:
                    merged[i] = self.merge_map(elem, o, item)
                    break
            else:
                merged.append(item)
        in_patch, server_only = _partition(merged, patch, merge_key)
        return _normalize(in_patch, server_only, patch, original, merge_key)


def _special_elements(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    replace = False
    for item in patch:
        directive = item.get(_DIRECTIVE) if isinstance(item, dict) else None
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if merge_key not in item:
                raise internal(f"map: {item} does not contain declared merge key: {merge_key}")
            original = [o for o in original if o.get(merge_key) != item[merge_key]]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise internal("merging lists cannot yet be specified in the patch")
        else:
            raise bad_request(f"Unknown patch type: {directive} in map: {item}")
    if replace:
        return plain, []
    return original, plain


def _ident(item: Any, merge_key: str | None) -> Any:
    return item.get(merge_key) if merge_key and isinstance(item, dict) else item


def _index(items: list[Any], item: Any, merge_key: str | None) -> int:
    want = _ident(item, merge_key)
    for i, x in enumerate(items):
        if _ident(x, merge_key) == want:
            return i
    return -1


def _partition(
    merged: list[Any], by: list[Any], merge_key: str | None
) -> tuple[list[Any], list[Any]]:
    present = [x for x in merged if _index(by, x, merge_key) >= 0]
    absent = [x for x in merged if _index(by, x, merge_key) < 0]
    return present, absent


def _normalize(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str | None,
) -> list[Any]:
    """``normalizeElementOrder``: patch items in patch order, server-only items in live
    order, interleaved by their position in the live list (``mergeSortedSlice``)."""
    right = sorted(patch_items, key=lambda x: _index(patch_order, x, merge_key))
    left = sorted(server_only, key=lambda x: _index(server_order, x, merge_key))
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key)
            ri = _index(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def strategic_merge_patch(
    version: str, kind: str, api_version: str, doc: dict[str, Any], patch: Any
) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("invalid JSON document: a strategic merge patch must be an object")
    root = (
        sch.kind_schema(version, kind, api_version)
        if sch.has_schema(version, kind, api_version)
        else None
    )
    return _Smp(version).merge_map(root, copy.deepcopy(doc), copy.deepcopy(patch))


def apply_patch(version: str, content_type: str, doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a patch body by its media type; raise the real server's errors."""
    media = content_type.split(";")[0].strip().lower()
    if media == JSON_PATCH:
        return json_patch(doc, patch)
    if media == MERGE_PATCH:
        out = merge_patch(doc, patch)
        if not isinstance(out, dict):
            raise bad_request("patched object is not a JSON object")
        return out
    if media == STRATEGIC_PATCH:
        return strategic_merge_patch(
            version, doc.get("kind", ""), doc.get("apiVersion", ""), doc, patch
        )
    if media == APPLY_PATCH:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "server-side apply is not implemented by the Kubernetes API double (tests/kube)",
        )
    raise unsupported_media_type()
