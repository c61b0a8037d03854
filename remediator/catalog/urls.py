"""HTTP(S) URLs the remediator may call: parsing, normalising, the allow-list and the
escaping of template values per URL component.

This module owns what "under an allowed prefix" means: scheme, host and port compare
exactly (default ports filled in), the path compares segment by segment after its dot
segments are resolved (``%2e`` counts as ``.``), and a URL with userinfo, or with a dot
segment a server could still find (``..;``, ``..%2F``, ``%252e%252e``), is never allowed.
It also owns how a label value becomes part of a URL: a path segment or a query
component is percent-encoded except for unreserved characters, and a value that would be
(or, decoded once more, would contain) a dot segment is refused. Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from remediator.catalog import placeholders

DEFAULT_PORTS = {"http": 80, "https": 443}
_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)"
    r"(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?$",
    re.S,
)
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
    r"|\[[0-9A-Fa-f:.]+\])$"
)
# nothing that a client or server could read as a separator, nor any whitespace
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\\"<>^`{|}]")
_DOTS = (".", "..")


class UrlError(ValueError):
    """A URL this module does not accept; the message says why."""


@dataclass(frozen=True, slots=True)
class HttpUrl:
    """An http(s) URL split into what the allow-list compares."""

    scheme: str  # lower case
    host: str  # lower case, without a trailing dot
    port: int  # the default port when the URL names none
    segments: tuple[str, ...]  # the path's segments, dot segments resolved, still encoded
    query: str | None
    fragment: str | None

    @property
    def path(self) -> str:
        return "/" + "/".join(self.segments) if self.segments else "/"


def _is_dot(segment: str) -> bool:
    return unquote(segment) in _DOTS


def resolve_dots(segments: Iterable[str]) -> tuple[str, ...]:
    """RFC 3986 ``remove_dot_segments`` on a path's segments; a percent-encoded dot
    segment (``%2e%2E``) is one too."""
    out: list[str] = []
    items = list(segments)
    for i, seg in enumerate(items):
        last = i == len(items) - 1
        if _is_dot(seg):
            if unquote(seg) == ".." and out:
                out.pop()
            if last:
                out.append("")  # "/a/.." is "/a/" as a directory
            continue
        out.append(seg)
    return tuple(out)


def parse(url: str) -> HttpUrl:
    """An absolute http(s) URL; UrlError saying what is wrong. Userinfo, backslashes,
    whitespace and control characters are refused rather than interpreted."""
    if _FORBIDDEN.search(url):
        raise UrlError(
            f'{url!r}: contains whitespace, a control character or one of \\ " < > ^ ` {{ | }}'
        )
    m = _URL.match(url)
    if m is None:
        raise UrlError(f"{url!r}: not an absolute URL (scheme://host/path)")
    scheme = m["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlError(f"{url!r}: only http and https URLs are allowed")
    authority = m["authority"]
    if "@" in authority:
        raise UrlError(f"{url!r}: a URL with userinfo (user@host) is not allowed")
    host, port_text = authority, ""
    if authority.startswith("["):
        close = authority.find("]")
        host, rest = authority[: close + 1], authority[close + 1 :]
        if rest and not rest.startswith(":"):
            raise UrlError(f"{url!r}: bad authority {authority!r}")
        port_text = rest[1:]
    elif ":" in authority:
        host, _, port_text = authority.partition(":")
    if not host or not _HOST.match(host):
        raise UrlError(f"{url!r}: bad host {host!r}")
    if port_text == "" and authority.endswith(":"):
        raise UrlError(f"{url!r}: empty port")
    if port_text and not (
        port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536
    ):
        raise UrlError(f"{url!r}: bad port {port_text!r}")
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    path = m["path"]
    if path and not path.startswith("/"):
        raise UrlError(f"{url!r}: the path must start with /")
    segments = resolve_dots(path.split("/")[1:]) if path else ()
    return HttpUrl(scheme, host.lower().rstrip("."), port, segments, m["query"], m["fragment"])


def _comparable(segments: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(unquote(s) for s in segments)


def is_under(url: HttpUrl, prefix: HttpUrl) -> bool:
    """Same scheme, host and port, and the path at or below the prefix's path on a
    segment boundary (``/hook`` and ``/hook/`` allow ``/hook`` and ``/hook/x``, not
    ``/hooked``). A prefix's query and fragment are ignored."""
    if (url.scheme, url.host, url.port) != (prefix.scheme, prefix.host, prefix.port):
        return False
    want = _comparable(prefix.segments)
    if want and want[-1] == "":
        want = want[:-1]
    got = _comparable(url.segments)
    return got[: len(want)] == want


def hides_dots(url: HttpUrl) -> bool:
    """Whether a path segment (dot segments already resolved) holds a dot segment that a
    server may still see: decoded more than once (``%252e%252e``), with ``%2F`` or ``\\``
    read as a separator (``..%2F``), or with a path parameter cut off (``..;x``)."""
    return any(
        piece in _DOTS for seg in url.segments for piece in re.split(r"[/\\;]", _decode_all(seg))
    )


def allowed(url: str, prefixes: Iterable[str]) -> bool:
    """Whether ``url`` is under one of the allow-list's ``prefixes``. A URL or prefix that
    does not parse never allows anything, nor does a URL that ``hides_dots``."""
    try:
        target = parse(url)
    except UrlError:
        return False
    if hides_dots(target):
        return False
    for prefix in prefixes:
        try:
            if is_under(target, parse(prefix)):
                return True
        except UrlError:
            continue
    return False


# --- template values ----------------------------------------------------------------
def encode_path_segment(value: str) -> str:
    """``value`` as (part of) one path segment: everything but unreserved characters
    percent-encoded. UrlError for a value that is a dot segment, that holds ``?`` or
    ``#``, or that holds a dot segment once ``%2F``, ``\\`` or ``;`` is read as a
    separator."""
    decoded = _decode_all(value)
    for piece in re.split(r"[/\\;]", decoded):
        if piece in _DOTS:
            raise UrlError(f"{value!r} would be a dot segment ({piece!r}) in a URL path")
    if "?" in decoded or "#" in decoded:
        raise UrlError(f"{value!r}: '?' and '#' are not allowed in a URL path segment")
    return _quote(value)


def encode_query(value: str) -> str:
    """``value`` as a query key or value: everything but unreserved characters
    percent-encoded (``&``, ``=``, ``+``, ``#`` included)."""
    return _quote(value)


def _quote(value: str) -> str:
    try:
        return quote(value, safe="", encoding="utf-8", errors="strict")
    except UnicodeEncodeError as exc:
        raise UrlError(f"{value!r} is not valid Unicode text") from exc


def _decode_all(value: str) -> str:
    """Percent-decode until nothing changes (a server may decode more than once)."""
    for _ in range(8):
        nxt = unquote(value)
        if nxt == value:
            return value
        value = nxt
    return value


# --- URL templates ------------------------------------------------------------------
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _component(prefix: str, i: int) -> str:
    """The URL component a template after ``prefix`` stands in; UrlError for the scheme,
    userinfo, host or port, which a template may never set."""
    m = _SCHEME.match(prefix)
    if m is None:
        raise UrlError(
            f"template #{i + 1} stands in the URL's scheme; the scheme, host and "
            "port must be written out in the playbook"
        )
    rest = prefix[m.end() :]
    cut = re.search(r"[/?#]", rest)
    if cut is None:
        raise UrlError(
            f"template #{i + 1} stands in the URL's host, port or userinfo; only "
            "path segments, query and fragment may come from a template"
        )
    after = rest[cut.start() :]
    return "fragment" if "#" in after else "query" if "?" in after else "path"


def _pieces(url: HttpUrl) -> tuple[Any, ...]:
    query = None if url.query is None else tuple(tuple(p.split("=")) for p in url.query.split("&"))
    return url.segments, query, url.fragment


@dataclass(frozen=True, slots=True)
class UrlTemplate:
    """A URL template split at its ``{{ }}``: the component each one stands in and the
    URL with placeholders (its scheme, host and port are the template's own)."""

    literals: tuple[str, ...]
    components: tuple[str, ...]  # "path", "query" or "fragment" per template
    base: HttpUrl

    @classmethod
    def compile(cls, literals: Sequence[str]) -> UrlTemplate:
        """UrlError when a template stands where it may not or the URL does not parse."""
        components, prefix = [], ""
        for i, literal in enumerate(literals[:-1]):
            prefix += literal
            components.append(_component(prefix, i))
            prefix += placeholders.placeholder(i)
        base = parse(prefix + literals[-1])
        return cls(tuple(literals), tuple(components), base)

    def render(self, values: Sequence[str]) -> str:
        """The URL with each value percent-encoded for its component; UrlError for a
        value that cannot be (a dot segment, ``?`` or ``#`` in a path segment) or that
        would move the URL off the template's scheme, host, port or path."""
        encoded = [
            encode_path_segment(v) if c == "path" else encode_query(v)
            for v, c in zip(values, self.components, strict=True)
        ]
        text = placeholders.join(self.literals, encoded)
        got = parse(text)
        if (got.scheme, got.host, got.port) != (self.base.scheme, self.base.host, self.base.port):
            raise UrlError(
                f"{text!r} leaves {self.base.scheme}://{self.base.host}:{self.base.port}"
            )

        def expand(piece: str) -> str:
            parts = placeholders.PATTERN.split(piece)  # literal, slot number, literal, ...
            return "".join(values[int(p)] if k % 2 else unquote(p) for k, p in enumerate(parts))

        want, have = _pieces(self.base), _pieces(got)
        shape_ok = (
            len(want[0]) == len(have[0])
            and (want[1] is None) == (have[1] is None)
            and (want[2] is None) == (have[2] is None)
        )
        if shape_ok and want[1] is not None and have[1] is not None:
            shape_ok = [len(p) for p in want[1]] == [len(p) for p in have[1]]
        if not shape_ok:
            raise UrlError(f"{text!r} does not have the template's path and query")
        for tpl, seg in zip(want[0], have[0], strict=True):
            if placeholders.PATTERN.search(tpl) and seg == "":
                raise UrlError(f"{text!r}: a template leaves a path segment empty")
        pairs = list(zip(want[0], have[0], strict=True))
        if want[1] is not None and have[1] is not None:
            pairs += [
                (a, b)
                for pa, pb in zip(want[1], have[1], strict=True)
                for a, b in zip(pa, pb, strict=True)
            ]
        if want[2] is not None and have[2] is not None:
            pairs.append((want[2], have[2]))
        for tpl, seg in pairs:
            if expand(tpl) != unquote(seg):
                raise UrlError(f"{text!r} does not carry the values the template asked for")
        return text
