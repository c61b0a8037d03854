"""The media type of a request body: JSON endpoints take ``application/json`` only.

A browser sends ``text/plain``, ``application/x-www-form-urlencoded`` and
``multipart/form-data`` cross-origin without asking first (a CORS "simple request"), so
a web page open in an operator's browser could post to a service on localhost. Insisting
on ``application/json`` makes the browser ask (a preflight), which these services never
answer. Parameters such as ``; charset=utf-8`` are allowed. Pure: no I/O, no aiohttp.
"""

from __future__ import annotations

JSON = "application/json"


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
