"""Actions: what each declares (params model, mutating or not, inverse, dry-run) and the
registry built from the modules that define them.

``@action`` only attaches an ``ActionSpec`` to the function; ``ActionRegistry.collect``
builds a registry instance from modules. There is no module-level registry. Outcomes are
values (``Executed``, ``DryRun``, ``Skipped``, ``Failed``), never exceptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from remediator.catalog.templating import Context
from remediator.errors import ActionPermanentError

if TYPE_CHECKING:
    from remediator.cluster.kube import Kube

ACTION_ATTR = "__vigil_action__"


class DryRunStyle(StrEnum):
    SERVER = "server"  # the request goes out with the API's own dry-run (Kubernetes dryRun=All)
    DESCRIBE = "describe"  # no dry-run exists: the request is described, not sent


@dataclass(frozen=True, slots=True)
class Executed:
    detail: dict[str, Any] = field(default_factory=dict)
    # how to undo it: (action name, params) of the inverse, or None
    inverse: tuple[str, dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class DryRun:
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    temporary: bool = False
    delay_s: float = 1.0


Outcome = Executed | DryRun | Skipped | Failed


class Services(Protocol):
    """The clients an action may use; built by the app, faked in tests."""

    async def alertmanager(self, method: str, path: str, body: Any = None) -> tuple[int, Any]: ...
    async def prometheus_query(self, query: str) -> list[dict[str, Any]]: ...
    async def http(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Any, timeout_s: float
    ) -> tuple[int, str]: ...
    async def detector(self, method: str, path: str, body: Any = None) -> tuple[int, Any]: ...
    def secret(self, name: str) -> str: ...
    def url_allowed(self, url: str) -> bool: ...
    # ``text`` with every secret read through ``secret`` (and the app's tokens) masked as
    # ``<secret NAME>``; every outcome, event and message passes through it
    def redact(self, text: str) -> str: ...


@dataclass(frozen=True)
class ActionContext:
    """What an action gets besides its params."""

    run_id: str
    run_url: str
    dry_run: bool
    services: Services
    alert: Any  # webhook.Alert
    log: logging.LoggerAdapter[logging.Logger]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] | None = None
    kube: Kube | None = None  # when a cluster is configured

    def cluster(self) -> Kube:
        """The Kubernetes client; ActionPermanentError when none is configured."""
        if self.kube is None:
            raise ActionPermanentError(
                "no Kubernetes cluster is configured (--kubeconfig, or "
                "run in a pod with a service account)"
            )
        return self.kube


ActionFunc = Callable[[ActionContext, Any], Awaitable[Outcome]]
RbacRule = tuple[str, str, tuple[str, ...]]  # (API group, resource[/subresource], verbs)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    params: type[BaseModel]
    mutates: bool
    dry_run: DryRunStyle
    func: ActionFunc
    describe: Callable[[Any], dict[str, Any]]  # the request(s) it would make, for plans
    inverse: str | None = None  # the action that undoes it (its params come from Executed)
    needs_cluster: bool = False
    rbac: tuple[RbacRule, ...] = ()  # Kubernetes permissions it needs
    # the params whose templates render into a query, URL or matcher, by path
    # (``query``, ``queries[].query``, ``matchers[]``); every other string is plain text
    templates: Mapping[str, Context] = field(default_factory=dict)

    def context(self, path: str) -> Context:
        """How a template at ``path`` inside the params is rendered."""
        return self.templates.get(path, Context.TEXT)


def action(
    name: str,
    *,
    params: type[BaseModel],
    mutates: bool,
    describe: Callable[[Any], dict[str, Any]],
    inverse: str | None = None,
    dry_run: DryRunStyle = DryRunStyle.DESCRIBE,
    needs_cluster: bool = False,
    rbac: tuple[RbacRule, ...] = (),
    templates: Mapping[str, Context] | None = None,
) -> Callable[[ActionFunc], ActionFunc]:
    """Declare an action; the registry collects it. Attaches an ActionSpec, nothing else.
    ``templates`` declares the context of each param that reaches a query, URL or matcher
    (e.g. ``{"query": Context.PROMQL}``), so a label value is escaped for it."""

    def mark(func: ActionFunc) -> ActionFunc:
        setattr(
            func,
            ACTION_ATTR,
            ActionSpec(
                name=name,
                params=params,
                mutates=mutates,
                dry_run=dry_run,
                func=func,
                describe=describe,
                inverse=inverse,
                needs_cluster=needs_cluster,
                rbac=rbac,
                templates=dict(templates or {}),
            ),
        )
        return func

    return mark


class ActionRegistry:
    """The actions playbooks may name, by name."""

    def __init__(self, specs: Iterable[ActionSpec]) -> None:
        self._specs: dict[str, ActionSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"action {spec.name!r} is defined twice")
            self._specs[spec.name] = spec
        for spec in self._specs.values():
            if spec.inverse is not None and spec.inverse not in self._specs:
                raise ValueError(f"action {spec.name!r}: inverse {spec.inverse!r} is unknown")

    @classmethod
    def collect(cls, *modules: ModuleType) -> ActionRegistry:
        specs = [
            getattr(obj, ACTION_ATTR)
            for module in modules
            for obj in vars(module).values()
            if callable(obj) and hasattr(obj, ACTION_ATTR)
        ]
        return cls(specs)

    def get(self, name: str) -> ActionSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)
