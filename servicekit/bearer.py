"""``Authorization: Bearer <token>`` (RFC 6750 §2.1): the one rule both services apply.

The rule, strict on purpose:

* the whole header is ASCII; anything else (bytes aiohttp could only decode with
  surrogate escapes, a UTF-8 token) is not a credential, so the caller answers 401;
* the scheme is ``Bearer`` compared case-insensitively (RFC 7235 §2.1: auth-scheme is
  case-insensitive), then one or more spaces, then the token;
* the token is visible ASCII (``VCHAR``, 0x21-0x7E) with no spaces inside; trailing
  spaces and tabs are optional whitespace, not part of it;
* it is compared with the configured token by ``hmac.compare_digest`` on bytes, so the
  time taken does not depend on how much of it matches.

A configured token must itself be presentable under this rule: ``token_problem`` says
why one is not (the services refuse to start with it). Pure: no I/O, no aiohttp.
"""

from __future__ import annotations

import hmac
import re

SCHEME = "bearer"  # compared with the header's scheme lowercased
CHALLENGE = 'Bearer realm="vigil"'  # the WWW-Authenticate value of a 401
_VCHAR = re.compile(r"[\x21-\x7e]+")


def parse_credential(header: str | None) -> str | None:
    """The token of a ``Bearer`` Authorization header; None when the header is absent,
    not ASCII, another scheme, or malformed.

    >>> parse_credential("Bearer abc.DEF-123")
    'abc.DEF-123'
    >>> parse_credential("bearer  abc") , parse_credential("Basic abc"), parse_credential("Bearer")
    ('abc', None, None)
    >>> parse_credential("Bearer caf\\u00e9") is None
    True
    """
    if not header or not header.isascii():
        return None
    scheme, sep, rest = header.partition(" ")
    if not sep or scheme.lower() != SCHEME:
        return None
    given = rest.lstrip(" ").rstrip(" \t")
    return given if _VCHAR.fullmatch(given) else None


def is_authorized(header: str | None, token: str) -> bool:
    """``header`` carries ``token`` under the rule above (compared in constant time)."""
    given = parse_credential(header)
    if given is None:
        return False
    return hmac.compare_digest(given.encode("ascii"), token.encode("utf-8"))


def token_problem(token: str) -> str | None:
    """Why a configured token could never be presented in a header; None when it can.
    The message never contains the token."""
    if not token:
        return "is empty"
    if not token.isascii():
        return "has characters that are not ASCII; a bearer token is visible ASCII only"
    if not _VCHAR.fullmatch(token):
        return "has spaces or control characters; a bearer token is visible ASCII only"
    return None
