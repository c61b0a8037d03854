"""Who decides on a waiting run: the users file, the trusted proxy header, the approvers rule.

This module owns the approvers' credentials: the users file (``auth.users_file``: each
person's name, the SHA-256 of their token and their groups), parsed once into ``Users``;
``identify`` turns a request's credentials into an ``Identity`` (pure, constant-time
comparisons); ``refusal`` judges an identity against a playbook's ``approvers`` (pure). A
request's own words (a ``by`` field) are never an identity. The only I/O is
``load_users`` reading the file. Tokens are never logged, stored or put in an error.

A users file::

    users:
      alice:
        token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        groups: [sre]

The hash is ``printf %s "$TOKEN" | sha256sum`` (docs/approvals.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator.catalog.playbook import PERSON_NAME as PERSON
from remediator.errors import ConfigError, IdentityError
from servicekit import bearer, yamlsrc

MAX_HEADER_GROUPS = 64
ADMIN = "admin-token"  # who the shared admin token is, in approved_by and the audit
RESERVED_NAMES = frozenset({ADMIN})  # no person may take one: it would pass for the token


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UserEntry(_Model):
    token_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description='lower-case hex SHA-256 of the user\'s token: printf %s "$TOKEN" | sha256sum',
    )
    groups: tuple[str, ...] = Field(
        (), description="groups the user belongs to, for playbooks' approvers.groups"
    )

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(PERSON, name):
                raise ValueError(f"{name!r} is not a group name (letters, digits, . _ @ + -)")
        return value


class UsersFile(_Model):
    """The file ``auth.users_file`` names: one entry per person who may approve or reject."""

    users: dict[str, UserEntry] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _user_names(cls, value: dict[str, UserEntry]) -> dict[str, UserEntry]:
        for name in value:
            if not re.fullmatch(PERSON, name):
                raise ValueError(f"{name!r} is not a user name (letters, digits, . _ @ + -)")
            if name.lower() in RESERVED_NAMES:
                raise ValueError(
                    f"{name!r} is the name the shared admin token is recorded "
                    "under; give this person another name"
                )
        seen: dict[str, str] = {}
        for name, entry in value.items():
            if entry.token_sha256 in seen:  # one token would name two people
                raise ValueError(
                    f"users {seen[entry.token_sha256]} and {name} have the same "
                    "token; give each person their own"
                )
            seen[entry.token_sha256] = name
        return value


@dataclass(frozen=True, slots=True)
class Users:
    """The people of the users file plus the groups of the remediator config."""

    entries: Mapping[str, UserEntry]
    groups: Mapping[str, frozenset[str]]  # group -> members, from auth.groups

    def groups_of(self, name: str) -> frozenset[str]:
        """The groups ``name`` is in: its users-file entry's and auth.groups'."""
        entry = self.entries.get(name)
        own = frozenset(entry.groups) if entry is not None else frozenset()
        return own | frozenset(g for g, members in self.groups.items() if name in members)


def load_users(path: Path | None, groups: Mapping[str, tuple[str, ...]]) -> Users:
    """The users file at ``path`` (None: nobody has a personal token) and the config's
    ``auth.groups``. ConfigError names every problem as ``file:line: path: message``."""
    members = {g: frozenset(names) for g, names in groups.items()}
    if path is None:
        return Users(entries={}, groups=members)
    try:
        parsed = yamlsrc.load(path, UsersFile)
    except yamlsrc.YamlSourceError as exc:
        raise ConfigError(str(exc)) from exc  # file:line: path: message, each
    return Users(entries=dict(parsed.users), groups=members)


class Via(StrEnum):
    USER_TOKEN = "user-token"  # a token of the users file
    TRUSTED_HEADER = "trusted-header"  # a proxy holding the admin token named the user
    ADMIN_TOKEN = "admin-token"  # the shared admin token, no person named


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    groups: frozenset[str]
    via: Via

    def audit(self) -> dict[str, str]:
        """How the audit log records who decided."""
        return {"by": self.name, "via": self.via.value}


def _header_groups(value: str | None) -> frozenset[str]:
    """oauth2-proxy's X-Forwarded-Groups: comma-separated; names that are not valid
    group names are left out (they could never match a playbook's approvers)."""
    if not value:
        return frozenset()
    names = [g.strip() for g in value.split(",")[:MAX_HEADER_GROUPS]]
    return frozenset(g for g in names if re.fullmatch(PERSON, g))


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The one value of header ``name`` (None: absent). IdentityError when the request
    carries it more than once: a proxy that appends the header instead of replacing the
    client's would let the client choose which one counts.

    ``headers`` may be a multidict (aiohttp's), whose ``items()`` yields every copy."""
    wanted = name.lower()
    values = [v for k, v in headers.items() if k.lower() == wanted]
    if len(values) > 1:
        raise IdentityError(
            f"the request carries the {name} header {len(values)} times; "
            "the proxy in front of the remediator must replace the header a "
            "client sends, not add another: refused, as the client could "
            "choose who it is"
        )
    return values[0] if values else None


def trusted_user(headers: Mapping[str, str], header: str) -> str | None:
    """The user the trusted proxy names in ``header``, stripped; None when it names nobody.
    IdentityError when the header comes more than once, holds a list (``a, b``: the way
    proxies join two copies) or names a reserved name (``admin-token``)."""
    value = header_value(headers, header)
    user = (value or "").strip()
    if "," in user:
        raise IdentityError(
            f"the {header} header names more than one user ({len(user.split(','))} "
            "comma-separated values); the proxy in front of the remediator "
            "must replace the header a client sends, not add to it"
        )
    if user.lower() in RESERVED_NAMES:
        raise IdentityError(
            f"the {header} header names {ADMIN!r}, the name the shared admin "
            "token is recorded under; no person may take it"
        )
    return user or None


def identify(
    *,
    credential: str | None,
    headers: Mapping[str, str],
    admin_token: str | None,
    users: Users,
    trusted_user_header: str | None = None,
    trusted_groups_header: str | None = None,
) -> Identity | None:
    """Who the request is from, by its credential (the token of its Authorization header,
    as ``servicekit.bearer.parse_credential`` read it); None when it has none we accept.

    The admin token names nobody (``admin-token``), unless ``trusted_user_header`` is
    configured and names a valid user: the proxy that authenticates people holds the
    admin token, so the header counts only beside it, never alone. A users-file token
    names its user. Every comparison takes the same time whatever matches. IdentityError
    (a 400) when, beside the admin token, the trusted headers come more than once or name
    ``admin-token`` (``trusted_user``)."""
    given = credential
    if given is None or bearer.token_problem(given) is not None:
        return None
    raw = given.encode("ascii")
    if admin_token is not None and hmac.compare_digest(raw, admin_token.encode("utf-8")):
        if trusted_user_header is not None:
            user = trusted_user(headers, trusted_user_header) or ""
            if re.fullmatch(PERSON, user):
                extra = _header_groups(
                    header_value(headers, trusted_groups_header) if trusted_groups_header else None
                )
                return Identity(user, users.groups_of(user) | extra, Via.TRUSTED_HEADER)
        return Identity(ADMIN, frozenset(), Via.ADMIN_TOKEN)
    digest = hashlib.sha256(raw).hexdigest().encode("ascii")
    found: str | None = None
    for name, entry in users.entries.items():  # no early exit: the same time for all
        if hmac.compare_digest(digest, entry.token_sha256.encode("ascii")):
            found = name
    if found is None:
        return None
    return Identity(found, users.groups_of(found), Via.USER_TOKEN)


def refusal(
    who: Identity, *, users: tuple[str, ...], groups: tuple[str, ...], playbook: str
) -> str | None:
    """Why ``who`` may not decide on a run of ``playbook`` whose approvers are ``users``
    and ``groups`` (both empty: anyone with a credential may); None when they may."""
    if not users and not groups:
        return None
    if who.via is not Via.ADMIN_TOKEN and (who.name in users or who.groups & set(groups)):
        return None
    named = "; ".join(
        part
        for part in (
            f"users {', '.join(users)}" if users else "",
            f"groups {', '.join(groups)}" if groups else "",
        )
        if part
    )
    if who.via is Via.ADMIN_TOKEN:
        return (
            f"playbook {playbook} names its approvers ({named}); the shared admin token "
            "names nobody: use your own token from auth.users_file, or come through the "
            "authenticating proxy"
        )
    return (
        f"{who.name} may not approve or reject runs of playbook {playbook}; its "
        f"approvers are {named}"
    )
