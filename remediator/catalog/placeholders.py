"""The stand-in a ``{{ }}`` takes while the text around it is parsed, and the joins of a
template's literals with values.

``promql``, ``urls`` and ``templating``'s matcher check all work the same way: parse the
template with ``placeholder(i)`` in slot ``i``, then find the slots again in what the
parser read (``PATTERN``). The stand-in uses unreserved characters only, so it survives
URL parsing and needs no escaping in a PromQL or matcher string. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PATTERN = re.compile(r"__vigil_template_(\d+)__")  # group 1: the slot number


def placeholder(i: int) -> str:
    """The stand-in for template ``i`` (counted from 0)."""
    return f"__vigil_template_{i}__"


def placeholders(n: int) -> list[str]:
    """The stand-ins for ``n`` templates, in order."""
    return [placeholder(i) for i in range(n)]


def join(literals: Sequence[str], values: Sequence[str]) -> str:
    """The literal text around the templates (one more than ``values``) with each value
    in its slot."""
    out = [literals[0]]
    for value, literal in zip(values, literals[1:], strict=True):
        out += [value, literal]
    return "".join(out)


def fill(text: str, values: Sequence[str]) -> str:
    """``text`` with each stand-in replaced by its slot's value."""
    return PATTERN.sub(lambda m: values[int(m.group(1))], text)
