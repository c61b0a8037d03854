"""Load a YAML file into a pydantic model, reporting every error as ``file:line: path: message``.

This module owns YAML parsing and the mapping of validation errors back to source lines.
It must not know any model of its own. Both services load their configuration (and the
remediator its playbooks) through it; like all of servicekit it imports neither service,
only the standard library, PyYAML and pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

M = TypeVar("M", bound=pydantic.BaseModel)
Loc = tuple[str | int, ...]


class YamlSourceError(Exception):
    """The file cannot be read, is not YAML, or does not validate; ``problems`` lists each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# A hand-written file needs neither; past them a document is hostile: PyYAML's composer
# recurses per level (RecursionError), and aliases share nodes, so a few lines can stand
# for billions of values ("billion laughs") that the walk and validation would visit.
MAX_DEPTH = 64
MAX_NODES = 100_000


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that keeps scalars such as ``2024-01-01`` as strings and refuses
    documents nested deeper than ``MAX_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_LineLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _walk(root: yaml.Node, lines: dict[Loc, int]) -> None:
    """Record the line of every key path; YAMLError past MAX_NODES or MAX_DEPTH.

    Aliases are followed, so both bounds count the document as the data it stands for.
    """
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    seen = 0
    while stack:
        node, loc = stack.pop()
        seen += 1
        if seen > MAX_NODES or len(loc) > MAX_DEPTH:
            what = (
                f"hold more than {MAX_NODES} values"
                if seen > MAX_NODES
                else f"nest deeper than {MAX_DEPTH} levels"
            )
            raise yaml.MarkedYAMLError(
                problem=f"aliases make the document {what}", problem_mark=node.start_mark
            )
        lines.setdefault(loc, node.start_mark.line + 1)  # a key's own line wins over its value's
        if isinstance(node, yaml.MappingNode):
            children = []
            for key_node, value_node in node.value:  # in order: a repeated key's last line wins
                # a complex key never constructs (unhashable); str() of one may not end
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else key_node.tag
                lines[(*loc, key)] = key_node.start_mark.line + 1
                children.append((value_node, (*loc, key)))
            stack += reversed(children)
        elif isinstance(node, yaml.SequenceNode):
            stack += reversed([(item, (*loc, i)) for i, item in enumerate(node.value)])


def format_loc(loc: Loc) -> str:
    """``("steps", 0, "params")`` -> ``steps[0].params``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _source_loc(data: Any, loc: Loc) -> Loc:
    """The part of a validation error's ``loc`` that names places in the document.

    pydantic inserts the names of union members and tags (``robust``,
    ``function-after[...]``) into ``loc``; they are skipped by walking the data itself.
    A missing or extra key is the last part of ``loc`` and is kept.
    """
    out: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and not last:
            continue  # a union member's name
        elif isinstance(part, str) and node is not None and not isinstance(node, dict):
            continue  # a union member's name where the data is a list or a scalar
        else:
            node = None
        out.append(part)
    return tuple(out)


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int:
    while loc not in lines and loc:
        loc = loc[:-1]
    return lines.get(loc, 1)


def compose(text: str, *, source: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML ``text`` into plain data and the line of every key path in it."""
    lines: dict[Loc, int] = {}
    loader = None
    try:
        loader = _LineLoader(text)  # its reader refuses control characters already
        node = loader.get_single_node()
        if node is not None:
            _walk(node, lines)  # first: it bounds what construction and validation visit
        data: Any = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else _reader_line(text, exc)
        problem = getattr(exc, "problem", None) or str(exc).split("\n", 1)[0]
        raise YamlSourceError([f"{source}:{line}: (root): invalid YAML: {problem}"]) from exc
    finally:
        if loader is not None:
            loader.dispose()
    return ({} if data is None else data), lines


def _reader_line(text: str, exc: yaml.YAMLError) -> int:
    """The line of a ReaderError (a character YAML does not allow), which has no mark."""
    position = getattr(exc, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def problem(source: str, data: Any, loc: Loc, lines: dict[Loc, int], message: str) -> str:
    """One ``file:line: path: message`` line for a place in composed data."""
    where = _source_loc(data, loc)
    return f"{source}:{_line_for(where, lines)}: {format_loc(where)}: {message}"


def validate(data: Any, lines: dict[Loc, int], model: type[M], *, source: str, at: Loc = ()) -> M:
    """Validate composed ``data`` (found at ``at`` in the file) as ``model``."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        root = _walk_to(data, at)
        raise YamlSourceError(
            [
                problem(source, root, (*at, *err["loc"]), lines, message(err))
                for err in exc.errors(include_url=False)
            ]
        ) from exc


_SHAPES = {
    "tuple_type": "a list",
    "list_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
}


def message(err: Any) -> str:
    """A pydantic error's message for people: without the ``Value error, `` prefix that
    pydantic adds to what a validator raised (validator internals, not the problem)."""
    kind = err.get("type")
    if kind in _SHAPES:  # "a valid tuple", "instance of RateLimit": Python's words, not YAML's
        return f"Input should be {_SHAPES[kind]}"
    ctx = err.get("ctx") or {}
    if err.get("type") == "union_tag_invalid":  # a discriminator: name the choices, not it
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    text = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _walk_to(data: Any, at: Loc) -> Any:
    """The document root that ``at`` was taken from (``data`` is the part at ``at``)."""
    for part in reversed(at):
        data = {part: data} if isinstance(part, str) else [None] * part + [data]
    return data


def parse_text(text: str, model: type[M], *, source: str) -> M:
    """Parse YAML ``text`` (named ``source`` in messages) into ``model``."""
    data, lines = compose(text, source=source)
    return validate(data, lines, model, source=source)


def load(path: Path, model: type[M]) -> M:
    """Read ``path`` and validate it as ``model``; raise YamlSourceError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlSourceError([f"{path}:1: (root): cannot read file: {exc}"]) from exc
    return parse_text(text, model, source=str(path))
