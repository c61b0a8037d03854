"""Loads playbooks from files and folders and checks them against the action registry.

This module owns what makes a set of playbooks valid: each file one ``Playbook`` named
like its file, names unique, every step naming a known action whose params validate
(template strings are checked for what they name; a query, URL or matcher template
must parse with placeholders for its values; the type is checked when rendered),
explicit undo steps alike. Every problem is reported as
``file:line: path: message``. A bad file never stops the good ones from loading; the
caller decides what to do with the problems (``check`` exits non-zero; the service logs
them and, on reload, keeps its last good set).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from remediator.actions.registry import ActionRegistry
from remediator.catalog import templating
from remediator.catalog.matchers import Matcher, matches_all
from remediator.catalog.playbook import Playbook, Step
from servicekit import yamlsrc


@dataclass(frozen=True)
class Entry:
    """A loaded playbook, its source file and its compiled matchers."""

    playbook: Playbook
    path: Path
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Catalog:
    entries: tuple[Entry, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_name(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.playbook.name == name), None)

    def matching(self, labels: dict[str, str], status: str) -> list[Entry]:
        """Playbooks whose match holds for an alert with these labels and status."""
        out = []
        for entry in self.entries:
            want = entry.playbook.spec.match.status
            if want != "any" and want != status:
                continue
            if matches_all(entry.matchers, labels):
                out.append(entry)
        return out


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
            )
        else:
            out.append(path)
    return out


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _value_at(data: Any, loc: Sequence[str | int]) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def strings_in(
    value: Any, loc: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in nested dicts and lists, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(item, (*loc, key if isinstance(key, str | int) else str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from strings_in(item, (*loc, index))


def check_step(step: Step, registry: ActionRegistry) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems of one step as (location inside the step, message)."""
    spec = registry.get(step.action)
    if spec is None:
        known = ", ".join(registry.names())
        return [(("action",), f"unknown action {step.action!r}; known: {known}")]
    out: list[tuple[tuple[str | int, ...], str]] = []
    for loc, text in strings_in(step.params):
        try:  # a query, URL or matcher template must parse (placeholders for the values)
            templating.check_as(text, spec.context(templating.param_path(loc)))
        except ValueError as exc:
            out.append((("params", *loc), str(exc)))
    try:
        spec.params.model_validate(step.params)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            if _is_template(_value_at(step.params, loc)):
                continue  # its type is checked once rendered for an alert
            out.append((("params", *loc), yamlsrc.message(err)))
    return out


def _check(
    playbook: Playbook,
    data: Any,
    lines: dict[yamlsrc.Loc, int],
    source: str,
    registry: ActionRegistry,
) -> list[str]:
    problems = []

    def add(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(yamlsrc.problem(source, data, loc, lines, message))

    spec = playbook.spec
    for i, step in enumerate(spec.steps):
        for loc, message in check_step(step, registry):
            add(("spec", "steps", i, *loc), message)
    if isinstance(spec.undo, tuple):
        for i, step in enumerate(spec.undo):
            for loc, message in check_step(step, registry):
                add(("spec", "undo", i, *loc), message)
    for i, pre in enumerate(spec.guards.preconditions):
        try:
            templating.check_as(pre.query, templating.Context.PROMQL)
        except ValueError as exc:
            add(("spec", "guards", "preconditions", i, "query"), str(exc))
    for i, verify in enumerate(spec.verify):
        try:
            templating.check_as(verify.query, templating.Context.PROMQL)
        except ValueError as exc:
            add(("spec", "verify", i, "query"), str(exc))
    return problems


def _raw_step_problems(
    data: Any, lines: dict[yamlsrc.Loc, int], source: str, registry: ActionRegistry
) -> list[str]:
    """The action problems of the steps of a playbook whose schema failed elsewhere."""
    spec = data.get("spec") if isinstance(data, dict) else None
    out = []
    for key in ("steps", "undo"):
        raw = spec.get(key) if isinstance(spec, dict) else None
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            try:
                step = Step.model_validate(item)
            except pydantic.ValidationError:
                continue  # reported with the playbook's own problems
            out += [
                yamlsrc.problem(source, data, ("spec", key, i, *loc), lines, message)
                for loc, message in check_step(step, registry)
            ]
    return out


def load_catalog(paths: Iterable[Path], registry: ActionRegistry) -> Catalog:
    """Every playbook under ``paths`` that validates, and the problems of the others."""
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in _files(paths):
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
            data, lines = yamlsrc.compose(text, source=source)
        except OSError as exc:
            problems.append(f"{source}:1: (root): cannot read file: {exc}")
            continue
        except UnicodeDecodeError as exc:
            problems.append(f"{source}:1: (root): not UTF-8 text: {exc}")
            continue
        except yamlsrc.YamlSourceError as exc:
            problems += exc.problems
            continue
        try:
            playbook = yamlsrc.validate(data, lines, Playbook, source=source)
        except yamlsrc.YamlSourceError as exc:
            # the steps that are valid steps get their action checks too: every problem
            # of the file in one pass, not the next batch after the first is fixed
            problems += exc.problems + [
                p
                for p in _raw_step_problems(data, lines, source, registry)
                if p not in exc.problems
            ]
            continue
        own = _check(playbook, data, lines, source, registry)
        name = playbook.name
        if path.stem != name:
            own.append(
                yamlsrc.problem(
                    source, data, ("metadata", "name"), lines, f"the file must be named {name}.yaml"
                )
            )
        if name in seen:
            own.append(
                yamlsrc.problem(
                    source,
                    data,
                    ("metadata", "name"),
                    lines,
                    f"{name!r} is already defined in {seen[name]}",
                )
            )
        if own:
            problems += own
            continue
        seen[name] = path
        entries.append(Entry(playbook, path, playbook.spec.match.compiled()))
    return Catalog(tuple(entries), tuple(problems))
