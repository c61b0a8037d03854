"""Reloading the configuration and the playbooks together, all or nothing.

This module owns what a reload reads and judges: the config file (through the loader
``__main__`` hands over, environment overrides included), the users file it names and
the playbooks, all validated before anything changes (``prepare``, blocking: run it off
the event loop), and which changed settings only a restart applies (``restart_only``,
pure). A reload with any problem changes nothing: the caller keeps its last good set.
Applying a prepared reload is the app's job (``remediator.app``), on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from remediator import identity
from remediator.actions.registry import ActionRegistry
from remediator.catalog.loader import Catalog, load_catalog
from remediator.config import RemediatorConfig
from remediator.errors import ConfigError

# settings a running service takes on reload; every other top-level field (and those of
# auth not listed) needs a restart: listeners, TLS, the audit file, cluster identity,
# tokens read at start, peers' clients
RELOADABLE = frozenset({"guards", "http", "max_alerts_per_webhook", "audit"})
RELOADABLE_AUTH = frozenset(
    {"users_file", "groups", "trusted_user_header", "trusted_groups_header"}
)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything a reload would switch to, validated; ``problems`` empty when it may."""

    cfg: RemediatorConfig | None
    users: identity.Users | None
    catalog: Catalog
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.cfg is not None and self.users is not None


def _lines(exc: ConfigError) -> list[str]:
    """A ConfigError's problems, one per line (yamlsrc joins them with newlines)."""
    return [line for line in str(exc).splitlines() if line.strip()]


def prepare(
    *,
    load_config: Callable[[], RemediatorConfig] | None,
    current: RemediatorConfig,
    playbook_dirs: Sequence[Path],
    registry: ActionRegistry,
) -> Prepared:
    """Read and validate the config, its users file and the playbooks; every problem
    of all three, each ``file:line: path: message`` where the file says where. Without
    ``load_config`` (no --config) the current config stays and only the playbooks and
    users file are read again."""
    problems: list[str] = []
    cfg: RemediatorConfig | None = current
    if load_config is not None:
        try:
            cfg = load_config()
        except ConfigError as exc:
            cfg = None
            problems += _lines(exc)
    users = None
    if cfg is not None:
        try:
            users = identity.load_users(cfg.auth.users_file, cfg.auth.groups)
        except ConfigError as exc:
            problems += _lines(exc)
    catalog = load_catalog(list(playbook_dirs), registry)
    problems += catalog.problems
    return Prepared(cfg=cfg, users=users, catalog=catalog, problems=tuple(problems))


def restart_only(old: RemediatorConfig, new: RemediatorConfig) -> list[str]:
    """The changed settings a reload does not apply (a restart does), as dotted paths."""
    out = []
    for name in type(old).model_fields:
        if name in RELOADABLE:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if name == "auth":
            out += [
                f"auth.{f}"
                for f in type(before).model_fields
                if f not in RELOADABLE_AUTH and getattr(before, f) != getattr(after, f)
            ]
        elif before != after:
            out.append(name)
    return out


def effective(old: RemediatorConfig, new: RemediatorConfig) -> RemediatorConfig:
    """What the service runs with after a reload: ``new``'s reloadable settings, ``old``'s
    others (they stay what the running listeners, clients and files were built with, and
    ``restart_only`` names them again at every reload until a restart)."""
    auth = old.auth.model_copy(update={f: getattr(new.auth, f) for f in RELOADABLE_AUTH})
    return old.model_copy(update={**{f: getattr(new, f) for f in RELOADABLE}, "auth": auth})
