"""Label text from Prometheus, made safe for where it is shown. Pure.

Label values are whatever a scrape target put there: terminal escape sequences,
bidirectional overrides, newlines, ``<script>``, lone surrogates. This module owns the
two renderings the backtest needs besides JSON (where ``json.dumps`` escapes by itself):

- ``printable``: one line of text a terminal shows literally: every control, format,
  separator, surrogate or non-character code point becomes a visible ``\\xNN`` /
  ``\\uNNNN`` escape, and a backslash is doubled so an escape cannot be forged.
- ``xml_text``: ``printable`` text, then XML-escaped (``& < > " '``), for SVG text
  content and attribute values. XML 1.0 cannot carry most control characters even as
  character references, so they must be gone before escaping, not after.
"""

from __future__ import annotations

import unicodedata

from detector.series.registry import Labels

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_XML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def _escape(c: str) -> str:
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def _unsafe(c: str) -> bool:
    if c == " ":
        return False
    category = unicodedata.category(c)
    # Cn (unassigned) includes the non-characters U+FFFE/U+FFFF; Zs other than the
    # plain space (no-break, ideographic) render as blanks and are left alone
    return category in _UNSAFE_CATEGORIES


def printable(text: str) -> str:
    """``text`` with everything a terminal could interpret made visible."""
    return "".join("\\\\" if c == "\\" else _escape(c) if _unsafe(c) else c for c in text)


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def xml_escape(text: str) -> str:
    """Printable text (see ``printable``) for SVG/XML character data or an attribute."""
    return "".join(_XML.get(c, c) for c in text)


def xml_text(text: str) -> str:
    """Any text for SVG/XML character data or a quoted attribute value."""
    return xml_escape(printable(text))


def _quote(value: str) -> str:
    inner = "".join(
        '\\"' if c == '"' else "\\\\" if c == "\\" else _escape(c) if _unsafe(c) else c
        for c in value
    )
    return '"' + inner + '"'


def series_text(labels: Labels) -> str:
    """``name{a="x", b="y"}`` as PromQL writes a series, already printable: values are
    quoted and escaped as PromQL strings, names and control characters made visible."""
    name = ""
    pairs = []
    for key, value in labels:
        if key == "__name__":
            name = printable(value)
        else:
            pairs.append(f"{printable(key)}={_quote(value)}")
    return name + "{" + ", ".join(pairs) + "}" if pairs or not name else name
