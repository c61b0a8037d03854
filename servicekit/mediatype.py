"""The media type of a request body: JSON endpoints take ``application/json`` only.

A browser sends ``text/plain``, ``application/x-www-form-urlencoded`` and
``multipart/form-data`` cross-origin without asking first (a CORS "simple request"), so
a web page open in an operator's browser could post to a service on localhost. Insisting
on ``application/json`` makes the browser ask (a preflight), which these services never
answer. Parameters such as ``; charset=utf-8`` are allowed.

``json_body`` reads such a body as UTF-8, the only encoding of JSON between systems (RFC
8259 section 8.1): a body that is not UTF-8, or a header naming another ``charset`` (or
one no codec knows), is a BodyError to answer with 400, never a 500. Pure: no I/O, no
aiohttp.
"""

from __future__ import annotations

import json
import re

JSON = "application/json"
UTF8_NAMES = frozenset({"utf-8", "utf8"})
# an escaped lone surrogate ("\ud800"): json accepts it, no UTF-8 writer can store it
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class BodyError(ValueError):
    """A request body that is not one JSON text in UTF-8; the message says what to send."""


def media_type(content_type: str | None) -> str:
    """``Application/JSON; charset=utf-8`` -> ``application/json``; "" when absent."""
    return (content_type or "").partition(";")[0].strip().lower()


def json_problem(content_type: str | None) -> str | None:
    """Why a body with this Content-Type header is not accepted as JSON; None when it is.

    >>> json_problem("application/json; charset=utf-8") is None
    True
    >>> json_problem("text/plain")
    "Content-Type is 'text/plain': send the JSON body with Content-Type: application/json"
    """
    got = media_type(content_type)
    if got == JSON:
        return None
    shown = repr(got) if got else "missing"
    return f"Content-Type is {shown}: send the JSON body with Content-Type: {JSON}"


def empty_or_json_problem(content_type: str | None, *, has_body: bool) -> str | None:
    """For endpoints whose body is optional: no body at all, or a JSON one."""
    return json_problem(content_type) if has_body else None


def charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header, lower-case; None when absent.

    >>> charset('application/json; Charset="UTF-8"')
    'utf-8'
    """
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def json_body(body: bytes, content_type: str | None = None) -> object:
    """The JSON value of a request body sent with ``content_type``; BodyError saying what
    is wrong.

    >>> json_body(b'{"reason": "no"}')
    {'reason': 'no'}
    >>> json_body(b'{"reason": "\\xff"}')  # doctest: +ELLIPSIS, +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    mediatype.BodyError: the body is not UTF-8 (byte 12: invalid start byte)... UTF-8
    """
    named = charset(content_type)
    if named is not None and named not in UTF8_NAMES:
        raise BodyError(
            f"the Content-Type names charset {named[:40]!r}: JSON is UTF-8, send "
            "charset=utf-8 or no charset"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            f"the body is not UTF-8 (byte {exc.start}: {exc.reason}): send JSON encoded as UTF-8"
        ) from None
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, an over-long integer
        raise BodyError(f"the body is not JSON: {exc}") from None
    except RecursionError:  # json recurses once per nesting level
        raise BodyError("the body is not JSON this service reads: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BodyError(
                "the body escapes a lone UTF-16 surrogate (\\ud800 to \\udfff), "
                "which is no character: send text only"
            ) from None
    return value
