"""Fail-closed start: may a service listen on an address while endpoints that write or
administer are open to anyone?

On a loopback address (127.0.0.0/8, ::1, ``localhost``) or a unix socket only this
machine can connect, so a service may run there without tokens (development, the local
demo). On any other address it must have the tokens that guard those endpoints, unless
its operator passes ``--insecure-no-auth``, which starts it with a loud warning. Pure:
``check`` returns a verdict; the caller prints the refusal and exits non-zero, or logs
the warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from servicekit import bearer

INSECURE_FLAG = "--insecure-no-auth"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True, slots=True)
class Unguarded:
    """Endpoints that anyone could call because a token is not set, and how to set it."""

    endpoints: str  # "POST /webhook"
    fix: str  # "set auth.bearer_token_file in the config, or VIGIL_..._TOKEN"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``refusal``: do not start, say this. ``warning``: start, but log this loudly."""

    refusal: str | None = None
    warning: str | None = None


def is_loopback(host: str) -> bool:
    """Only this machine can connect to ``host``: a loopback address or name, or a unix
    socket (``unix:/path`` or an absolute path). Other names count as reachable from
    elsewhere: what they resolve to is not known here.

    >>> [is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost")]
    [True, True, True, True, True]
    >>> [is_loopback(h) for h in ("0.0.0.0", "", "::", "10.0.0.7", "vigil.example")]
    [False, False, False, False, False]
    """
    text = host.strip()
    if text.startswith(("unix:", "/")):
        return True
    text = text.removeprefix("[").removesuffix("]")
    if text.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check(
    *,
    listen: str,
    host: str,
    unguarded: Sequence[Unguarded],
    insecure_no_auth: bool,
    tokens: Sequence[tuple[str, str | None]] = (),
) -> Verdict:
    """The verdict for listening on ``host`` (shown as ``listen``) with ``unguarded``
    endpoints; messages name the address, the endpoints and what to do. ``tokens``:
    (what, value) of the service's tokens; one that is set but unusable
    (``bearer.token_problem``) refuses the start on any address, even insecurely."""
    for what, token in tokens:
        if token is not None and (problem := bearer.token_problem(token)) is not None:
            return Verdict(refusal=f"{what} {problem}")
    if not unguarded:
        return Verdict()
    what = "; ".join(f"{u.endpoints} (to guard: {u.fix})" for u in unguarded)
    if insecure_no_auth:
        return Verdict(
            warning=f"INSECURE: started with {INSECURE_FLAG}: anyone who can "
            f"reach {listen} may call {what}"
        )
    if is_loopback(host):
        return Verdict()
    return Verdict(
        refusal=f"refusing to listen on {listen} without authentication: "
        f"anyone who can reach it could call {what}. Set the token, listen on "
        f"a loopback address (127.0.0.1, ::1, localhost), or pass "
        f"{INSECURE_FLAG} to accept the risk"
    )
