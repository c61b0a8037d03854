"""Secrets kept out of what the remediator writes and answers: logs, audit events, run
outcomes, escalations and API answers.

``Redactor`` holds the secret values this process has read (secret files, bearer tokens)
and replaces every form of each it knows with ``<secret NAME>`` in text passed through it.
One instance belongs to the services object built by ``build_app``; it is never a module
global, so two apps in one process (tests) never share secrets. ``bare_url`` and
``bare_urls`` describe URLs for messages without userinfo, query or fragment (where tokens
hide in URLs that are not secrets). Pure: no I/O, no clock.

What counts as a form of a secret: the value itself; for a URL, the part after the host,
its path and query (each of at least ``MIN_WORD`` characters), the userinfo password, and
each path segment or query value of at least ``MIN_URL_PART`` characters (a Slack
webhook's token is its last segment); otherwise each whitespace-separated word of at least
``MIN_WORD`` characters (the token of ``Bearer <token>``); and each of those JSON-escaped,
with ``\\/`` escapes, and URL-quoted, as an endpoint echoing a request may write them.
Redaction must run before any truncation: a cut secret no longer matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MIN_WORD = 8
MIN_URL_PART = 12
# a URL inside free text; it ends at whitespace or a quote/bracket that closes a message part
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>\[\]()]+""")


def bare_url(url: str) -> str:
    """``url`` without userinfo, query or fragment (a removed query shows as ``?...``);
    text that is not an absolute URL comes back unchanged."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = (f"[{host}]" if host and ":" in host else host or "") + (
        f":{port}" if port is not None else ""
    )
    bare = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return bare + ("?..." if parts.query else "")


def bare_urls(text: str) -> str:
    """Every absolute URL in ``text`` made bare (see ``bare_url``)."""
    return _URL_IN_TEXT.sub(lambda m: bare_url(m.group(0)), text)


def _parts(value: str) -> set[str]:
    """The pieces of a secret that identify it on their own."""
    parts = {value}
    try:
        url = urlsplit(value)
        password = url.password
    except ValueError:
        url, password = None, None
    if url is not None and url.scheme and url.netloc:
        rest = value.split(url.netloc, 1)[-1]
        parts.update(p for p in (rest, url.path, url.query) if len(p) >= MIN_WORD)
        if password:
            parts.add(password)
        parts.update(seg for seg in url.path.split("/") if len(seg) >= MIN_URL_PART)
        parts.update(v for _, v in parse_qsl(url.query) if len(v) >= MIN_URL_PART)
    else:
        parts.update(w for w in value.split() if len(w) >= MIN_WORD)
    return parts


def _encodings(part: str) -> set[str]:
    """How an echoing endpoint or a library may have written ``part``."""
    return {
        part,
        json.dumps(part)[1:-1],
        part.replace("/", "\\/"),
        quote(part, safe=""),
        quote(part, safe="/:"),
    }


def redact_tree(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with every string, keys too,
    passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_tree(k, redact): redact_tree(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v, redact) for v in value]
    return value


def _stand_in(i: int) -> str:
    """NUL, a private-use character numbering the mask, NUL: no secret form holds a NUL."""
    return f"\x00{chr(0xF0000 + i)}\x00"


class Redactor:
    """The secret values one app has read, and their replacement in text."""

    def __init__(self) -> None:
        self._masks: dict[str, str] = {}  # a form of a secret -> "<secret NAME>"
        self._longest_first: list[tuple[str, str]] = []

    def register(self, name: str, value: str | None) -> None:
        """Mask ``value`` (and its forms) as ``<secret NAME>`` from now on; empty or None
        registers nothing. The first name a form was registered under stays."""
        if not value:
            return
        mask = f"<secret {name}>"
        for part in _parts(value):
            for form in _encodings(part):
                if "\x00" not in form:  # ``text``'s stand-ins are NUL-delimited
                    self._masks.setdefault(form, mask)
        self._longest_first = sorted(self._masks.items(), key=lambda kv: -len(kv[0]))

    def text(self, text: str) -> str:
        """``text`` with each known secret replaced by its mask, longest forms first (so a
        whole URL is named before its path could be). Forms are first replaced by stand-ins
        made of NULs, which no later (shorter) form can match inside, then by their masks:
        a short secret such as ``ret`` cannot eat into an earlier ``<secret NAME>``."""
        used: list[str] = []
        for form, mask in self._longest_first:
            if form in text:
                text = text.replace(form, _stand_in(len(used)))
                used.append(mask)
        for i, mask in enumerate(used):
            text = text.replace(_stand_in(i), mask)
        return text

    def message(self, text: str) -> str:
        """An error message for people: secrets masked, then every URL made bare."""
        return bare_urls(self.text(text))
