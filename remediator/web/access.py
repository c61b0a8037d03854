"""What a request to the remediator must carry to go on: its credential, a JSON media
type, a readable JSON body.

This module owns the refusals the handlers share: 401 without the webhook or admin token,
415 for a body that does not say it is JSON, 400 for a trusted-proxy header that cannot
say who. Tokens are compared only by ``servicekit.bearer``; who a credential names is
``remediator.identity``'s to decide. Nothing here touches the audit log or the runner.
"""

from __future__ import annotations

from aiohttp import web

from remediator import identity
from remediator.errors import IdentityError
from remediator.runtime import State
from servicekit import bearer, mediatype

MAX_CLAIM_CHARS = 200


def authorized(request: web.Request, token: str | None) -> bool:
    """The request carries ``token`` (servicekit.bearer's rule); always, when it is None."""
    if token is None:
        return True
    return bearer.is_authorized(request.headers.get("Authorization"), token)


def unauthorized(error: str) -> web.Response:
    return web.json_response(
        {"error": error}, status=401, headers={"WWW-Authenticate": bearer.CHALLENGE}
    )


def media_refusal(request: web.Request, *, body_optional: bool = False) -> web.Response | None:
    """The 415 for a body that does not say it is JSON (a browser posts text/plain
    cross-site without asking); None when it may go on. ``body_optional``: no body at
    all is fine too."""
    content_type = request.headers.get("Content-Type")
    problem = (
        mediatype.empty_or_json_problem(content_type, has_body=request.body_exists)
        if body_optional
        else mediatype.json_problem(content_type)
    )
    return None if problem is None else web.json_response({"error": problem}, status=415)


def admin_refusal(request: web.Request, token: str | None, what: str) -> web.Response | None:
    """The 401 for an admin endpoint without the admin token; None when it may go on."""
    if token is not None and authorized(request, token):
        return media_refusal(request, body_optional=True)
    return unauthorized(f"{what} needs the admin token (auth.admin_token_file)")


def actor(request: web.Request, trusted_header: str | None) -> str:
    """Who makes an admin request, from its credential: the user a trusted proxy names in
    ``trusted_header`` (auth.trusted_user_header), else the admin token itself. Call it
    only once ``admin_refusal`` let the request in: the header counts only beside the
    admin token (which that proxy holds), never alone. IdentityError (a 400) when the
    header comes twice or names ``admin-token`` (identity.trusted_user)."""
    if trusted_header is not None:
        user = identity.trusted_user(request.headers, trusted_header)
        if user and user.isprintable():
            return user[:MAX_CLAIM_CHARS]
    return identity.ADMIN


def identity_refusal(exc: IdentityError) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


def decider(request: web.Request, st: State) -> identity.Identity | web.Response:
    """Who approves or rejects, from the request's credential (a users-file token, or the
    admin token with the trusted proxy's header); the 401 or 415 when it may not go on;
    IdentityError when the trusted headers cannot say who."""
    auth = st.cfg.auth
    credential = bearer.parse_credential(request.headers.get("Authorization"))
    who = identity.identify(
        credential=credential,
        headers=request.headers,
        admin_token=st.admin_token,
        users=st.users,
        trusted_user_header=auth.trusted_user_header,
        trusted_groups_header=auth.trusted_groups_header,
    )
    if who is None:
        return unauthorized(
            "approving or rejecting needs your token (auth.users_file) or "
            "the admin token (auth.admin_token_file)"
        )
    return media_refusal(request, body_optional=True) or who


async def json_body(request: web.Request) -> object:
    """The request's JSON body ({} when it has none); mediatype.BodyError (a 400) when it
    is not UTF-8 JSON or its Content-Type names another charset."""
    if not request.body_exists:
        return {}
    return mediatype.json_body(await request.read(), request.headers.get("Content-Type"))


def claim(value: object) -> str | None:
    """A name the request gives for itself (``by``): kept as an unverified note."""
    if value is None:
        return None
    text = str(value)
    return text[:MAX_CLAIM_CHARS] if text.isprintable() else repr(text)[:MAX_CLAIM_CHARS]
