"""The playbook JSON Schema for editors: each step's ``params`` chosen by its ``action``.

This module owns ``playbook_schema``: the ``Playbook`` model's schema (descriptions and
defaults from the models) with ``action`` limited to the registry's actions, each one
described, and for every action an ``if``/``then`` that validates ``params`` with that
action's own params model (its fields, types, defaults; extra keys refused). Where a
template (``{{ labels.x }}``) may stand for a value that is not a string, the schema
accepts a template string too: the loader checks its type once rendered. Pure: no I/O.
The loader stays the authority (it also checks templates and names); the schema is what
editors complete and flag as you type.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from remediator.actions.registry import ActionRegistry, ActionSpec, DryRunStyle
from remediator.catalog.playbook import Playbook

SCHEMA_ID = "https://vigil.dev/schemas/playbook/v1.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
TEMPLATE = "Template"
TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"\{\{.*\}\}",
    "description": "a template over the alert ({{ labels.namespace }}, {{ run.id }}), "
    "rendered and type-checked when a run is planned",
}


def _params_def(action: str) -> str:
    return "params." + action


CONSTRAINTS = ("pattern", "enum", "const", "format", "minLength", "maxLength")


def _plain_string(schema: dict[str, Any]) -> bool:
    """A string any text satisfies (a template included)."""
    return schema.get("type") == "string" and not any(k in schema for k in CONSTRAINTS)


def _items(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the items of an array (in it or its branches) templatable."""
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return {**schema, "items": _allow_template(schema["items"])}
    if "anyOf" in schema:
        return {**schema, "anyOf": [_items(b) for b in schema["anyOf"]]}
    return schema


def _allow_template(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or a template string in its place (the loader checks the rendered
    value's type). A ``$ref`` is left alone: its definition is made templatable itself."""
    if "$ref" in schema or _plain_string(schema):
        return schema
    schema = _items(schema)
    template = {"$ref": f"#/$defs/{TEMPLATE}"}
    if "anyOf" in schema:
        if any(_plain_string(b) for b in schema["anyOf"]):
            return schema
        return {**schema, "anyOf": [*schema["anyOf"], template]}
    keep: dict[str, Any] = {
        k: schema[k] for k in ("default", "description", "title") if k in schema
    }
    rest = {k: v for k, v in schema.items() if k not in keep}
    return {**keep, "anyOf": [rest, template]}


def _summary(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "").strip()
    return text.split("\n\n")[0].replace("\n", " ")


def _describe(name: str, spec: ActionSpec) -> str:
    """What an editor shows for an action: its doc, what it changes, its dry run."""
    doc = _summary(spec.func.__doc__) or _summary(spec.params.__doc__)
    effect = "changes things" if spec.mutates else "changes nothing"
    dry = (
        "a server-side dry run"
        if spec.dry_run is DryRunStyle.SERVER
        else "described, not sent, in a dry run"
    )
    cluster = "; needs a Kubernetes cluster" if spec.needs_cluster else ""
    undo = f"; undone by {spec.inverse}" if spec.inverse else ""
    return f"{doc + '. ' if doc else ''}{name}: {effect}; {dry}{cluster}{undo}"


def playbook_schema(registry: ActionRegistry) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a playbook file, for ``registry``'s actions."""
    names = sorted(registry.names())
    specs = {name: registry.get(name) for name in names}
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [(Playbook, "validation")]
    models += [(spec.params, "validation") for spec in specs.values() if spec is not None]
    refs, top = models_json_schema(models, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = copy.deepcopy(top["$defs"])
    playbook_ref = refs[(Playbook, "validation")]["$ref"].rsplit("/", 1)[1]
    root = defs.pop(playbook_ref)
    own = set(Playbook.model_json_schema()["$defs"])  # the playbook's, not the params'
    for ref, model in defs.items():
        if ref not in own:  # a params model, or one nested in a params model
            props = model.get("properties", {})
            for key, prop in props.items():
                props[key] = _allow_template(prop)
    for name, spec in specs.items():
        assert spec is not None
        ref = refs[(spec.params, "validation")]["$ref"].rsplit("/", 1)[1]
        # one definition per action (two actions may share a params model)
        defs[_params_def(name)] = {"$ref": f"#/$defs/{ref}", "description": f"the params of {name}"}
    defs[TEMPLATE] = TEMPLATE_SCHEMA
    step = defs["Step"]
    step["properties"]["action"] = {
        "description": step["properties"]["action"].get("description", "the action"),
        "oneOf": [
            {"const": name, "description": _describe(name, spec)}
            for name, spec in specs.items()
            if spec is not None
        ],
    }
    step["properties"]["params"] = {
        "type": "object",
        "description": step["properties"]["params"].get("description", ""),
        "default": {},
    }
    step["allOf"] = [
        {
            "if": {"properties": {"action": {"const": name}}, "required": ["action"]},
            "then": {"properties": {"params": {"$ref": f"#/$defs/{_params_def(name)}"}}},
        }
        for name in names
    ]
    return {"$schema": DIALECT, "$id": SCHEMA_ID, **root, "$defs": defs}
