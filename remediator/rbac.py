"""``vigil-remediator rbac``: RBAC that is least-scope as well as least-verb.

For each loaded playbook this module works out what each step (its explicit undo steps,
and with ``undo: auto`` the inverse of each step) can touch, from the action's declared
permissions (``ActionSpec.rbac``) narrowed by the step's own params:

- **kinds**: an action with a ``kind`` param gets its rules only for the kinds that param
  can take: a literal, the param's default, or for ``{{ target.kind }}`` the kinds a target
  resolves to; a namespaced step cannot reach a node and a step without a namespace can
  reach nothing but a node.
- **namespaces**: a literal ``namespace`` is that namespace. ``{{ labels.namespace }}`` and
  ``{{ target.namespace }}`` are the alert's namespace, which the playbook's namespace
  guard bounds: its allow-list, or when it has none the namespaces given with
  ``--namespaces``, minus its deny list. Any other template is bounded by no guard: the
  ``--namespaces``, minus the deny list.
- **cluster-scoped kinds** (nodes) go into a ClusterRole, and only when a step uses them.
  A step that names no namespace but reaches namespaced objects (``kubernetes.drain``:
  the pods on a node, in whatever namespace) reads them cluster-wide (a pod list across
  namespaces cannot be granted per namespace) and writes them (evictions) only in the
  ``--namespaces``, unless ``cluster_wide_evictions`` is asked for.

Cluster-wide *write* rights are never emitted because a playbook lacks an allow-list: a
playbook that may act in any namespace needs ``--namespaces``, or ``ConfigError`` says
which playbooks need it. Target resolution's reads (pod → ReplicaSet → Deployment, ...) are
granted in each cluster playbook's alert namespaces; the remediator's own Leases and state
ConfigMap in a Role in its own namespace. Pure: it renders objects, it applies nothing.
"""

from __future__ import annotations

import re
import typing
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from remediator.actions.registry import ActionRegistry, ActionSpec, RbacRule
from remediator.catalog.loader import Catalog
from remediator.catalog.playbook import Playbook, Step
from remediator.cluster import targets
from remediator.errors import ConfigError

# targets.resolve reads these in the alert's namespace: pod -> ReplicaSet -> Deployment,
# or the pod's StatefulSet, DaemonSet or Job, or a workload named by a label. A node
# target is read with the node rules of the actions that act on nodes.
RESOLVE: tuple[RbacRule, ...] = (
    ("", "pods", ("get",)),
    ("apps", "replicasets", ("get",)),
    ("apps", "deployments", ("get",)),
    ("apps", "statefulsets", ("get",)),
    ("apps", "daemonsets", ("get",)),
    ("batch", "jobs", ("get",)),
)
# the kinds targets.resolve can return (Target.kind), and their resources
KIND_RESOURCES: Mapping[str, str] = {
    "deployment": "deployments",
    "statefulset": "statefulsets",
    "daemonset": "daemonsets",
    "replicaset": "replicasets",
    "job": "jobs",
    "pod": "pods",
    "node": "nodes",
}
CLUSTER_SCOPED = frozenset({"nodes"})
READ_VERBS = frozenset({"get", "list", "watch"})
# cluster.state.ClusterState's ConfigMap: the only one the remediator reads or updates
STATE_CONFIGMAP = "vigil-remediator-state"
RBAC_API = "rbac.authorization.k8s.io/v1"
OWN = "(the remediator)"  # the playbook name of the remediator's own needs
ALERT_NAMESPACE = re.compile(r"\{\{\s*(labels|target)\.namespace\s*\}\}")
PLAIN_ALTERNATIVES = re.compile(r"[a-z0-9][-a-z0-9]*(\|[a-z0-9][-a-z0-9]*)*")

WhereKind = Literal["cluster", "fixed", "alert", "given", "every", "own"]


@dataclass(frozen=True, slots=True)
class Where:
    """Where a permission applies, before ``--namespaces`` are known.

    ``cluster``: a ClusterRole. ``fixed``: the one ``namespace``. ``alert``: the alert's
    namespace, bounded by the playbook's namespace guard (``allow``, or ``--namespaces``
    when it has no allow-list; minus ``deny``). ``given``: ``--namespaces`` minus ``deny``
    (a namespace no guard bounds). ``every``: writes of a step that reaches objects in any
    namespace (drain's evictions): ``--namespaces`` minus ``deny``, or cluster-wide when
    asked. ``own``: the remediator's namespace.
    """

    kind: WhereKind
    namespace: str | None = None
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()

    def describe(self) -> str:
        """For the table in docs/rbac.md and the output's comments."""
        except_ = f" except {', '.join(f'`{n}`' for n in self.deny)}" if self.deny else ""
        given = f"`--namespaces`{except_}"
        if self.kind == "cluster":
            return "cluster-wide (ClusterRole)"
        if self.kind == "fixed":
            return f"namespace `{self.namespace}`"
        if self.kind == "own":
            return "its own namespace (`--namespace`)"
        if self.kind == "alert" and self.allow is not None:
            kept = [n for n in self.allow if n not in self.deny]
            return "alert's namespace: " + (", ".join(f"`{n}`" for n in kept) or "none")
        if self.kind == "alert":
            return f"alert's namespace: {given}"
        if self.kind == "every":
            return f"{given} (cluster-wide with `--cluster-wide-evictions`)"
        return given

    @property
    def needs_given(self) -> bool:
        """Whether ``--namespaces`` must name where this applies."""
        return self.kind in ("given", "every") or (self.kind == "alert" and self.allow is None)


class Bounds(typing.NamedTuple):
    allow: tuple[str, ...] | None
    deny: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Need:
    """One permission one playbook needs, and why."""

    playbook: str
    where: Where
    group: str
    resource: str
    verbs: tuple[str, ...]
    reason: str
    resource_names: tuple[str, ...] = ()  # only these objects (empty: any)


@dataclass(frozen=True, slots=True)
class Grant:
    """A need placed: ``namespace`` None is cluster-wide."""

    namespace: str | None
    group: str
    resource: str
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()
    playbook: str = ""


def _kinds(spec: ActionSpec, step_value: Any) -> set[str] | None:
    """The kinds the step's ``kind`` param can take; None when the action has none."""
    field = spec.params.model_fields.get("kind")
    if field is None:
        return None
    allowed = {str(a) for a in typing.get_args(field.annotation)} or set(KIND_RESOURCES)
    value = field.default if step_value is None else step_value
    if not isinstance(value, str):
        return allowed
    if "{{" not in value:
        return {value} & allowed
    if re.fullmatch(r"\{\{\s*target\.kind\s*\}\}", value):
        return allowed & set(KIND_RESOURCES)
    return allowed


def _namespace_where(
    value: Any, guards_allow: tuple[str, ...] | None, deny: tuple[str, ...]
) -> Where | None:
    """Where a step's ``namespace`` param puts it; None for no namespace."""
    if value is None:
        return None
    text = str(value)
    if "{{" not in text:
        return Where("fixed", namespace=text)
    if ALERT_NAMESPACE.fullmatch(text):
        return Where("alert", allow=guards_allow, deny=deny)
    return Where("given", deny=deny)


def namespace_bounds(pb: Playbook) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """(allow, deny) for the alert's ``namespace`` label: the namespace guard's lists,
    narrowed by the playbook's ``match`` where it names namespaces plainly (``namespace``
    ``=``, ``!=``, or ``=~``/``!~`` over ``a|b`` alternatives; other regexes bound nothing
    here)."""
    g = pb.spec.guards.namespaces
    allow = set(g.allow) if g.allow is not None else None
    deny = set(g.deny)
    for m in pb.spec.match.compiled():
        if m.name != "namespace" or not PLAIN_ALTERNATIVES.fullmatch(m.value):
            continue
        names = set(m.value.split("|"))
        if m.op in ("=", "=~"):
            allow = names if allow is None else allow & names
        else:
            deny |= names
    return (tuple(sorted(allow)) if allow is not None else None), tuple(sorted(deny))


def _step_needs(
    pb: Playbook, step: Step, acting: ActionSpec, rules_of: ActionSpec, reason: str
) -> list[Need]:
    """What ``rules_of``'s rules need when run with ``step``'s params (``acting`` is the
    step's own action: an inverse acts on the object its step acted on)."""
    g = Bounds(*namespace_bounds(pb))
    fields = acting.params.model_fields
    has_ns = "namespace" in fields
    ns_value = step.params.get("namespace", fields["namespace"].default if has_ns else None)
    where = _namespace_where(ns_value, g.allow, g.deny) if has_ns else None
    kinds = _kinds(acting, step.params.get("kind"))
    if kinds is not None and has_ns:
        # a namespaced object needs a namespace and a node must have none (the params'
        # own validation refuses the other combinations)
        kinds = {k for k in kinds if (KIND_RESOURCES.get(k) in CLUSTER_SCOPED) == (where is None)}
    chosen = {KIND_RESOURCES[k] for k in kinds or () if k in KIND_RESOURCES}
    out: list[Need] = []
    for group, resource, verbs in rules_of.rbac:
        base = resource.split("/")[0]
        if kinds is not None and base in KIND_RESOURCES.values() and base not in chosen:
            continue
        if base in CLUSTER_SCOPED:
            place = Where("cluster")
        elif where is not None:
            place = where
        else:  # reaches objects in any namespace: reads cluster-wide, writes where allowed
            reads = tuple(v for v in verbs if v in READ_VERBS)
            writes = tuple(v for v in verbs if v not in READ_VERBS)
            if reads:
                out.append(
                    Need(
                        pb.name,
                        Where("cluster"),
                        group,
                        resource,
                        reads,
                        reason + " (in every namespace)",
                    )
                )
            if writes:
                out.append(
                    Need(pb.name, Where("every", deny=g.deny), group, resource, writes, reason)
                )
            continue
        out.append(Need(pb.name, place, group, resource, verbs, reason))
    return out


def needs(catalog: Catalog, registry: ActionRegistry) -> list[Need]:
    """Every permission the catalog's playbooks need, each with its playbook and reason."""
    out: list[Need] = []
    for entry in catalog.entries:
        pb = entry.playbook
        undo = pb.spec.undo
        steps = [(s, f"{s.action} (step {s.name})") for s in pb.spec.steps]
        steps += [
            (s, f"{s.action} (undo step {s.name})")
            for s in (undo if isinstance(undo, tuple) else ())
        ]
        mine: list[Need] = []
        cluster = False
        for step, reason in steps:
            spec = registry.get(step.action)
            if spec is None:
                continue
            cluster = cluster or spec.needs_cluster
            mine += _step_needs(pb, step, spec, spec, reason)
        if undo == "auto":
            for step in pb.spec.steps:
                spec = registry.get(step.action)
                inverse = registry.get(spec.inverse) if spec and spec.inverse else None
                if spec is not None and inverse is not None:
                    mine += _step_needs(
                        pb,
                        step,
                        spec,
                        inverse,
                        f"{inverse.name} (automatic undo of step {step.name})",
                    )
        if cluster:
            g = Bounds(*namespace_bounds(pb))
            where = Where("alert", allow=g.allow, deny=g.deny)
            mine += [
                Need(pb.name, where, group, resource, verbs, "target resolution")
                for group, resource, verbs in RESOLVE
            ]
        out += mine
    return out


def own_needs() -> list[Need]:
    """The remediator's replicas: leader and per-target Leases (named after the targets,
    so not restricted by name) and the shared state ConfigMap (restricted by name; a
    create cannot be)."""
    own = Where("own")
    return [
        Need(
            OWN,
            own,
            "coordination.k8s.io",
            "leases",
            ("create", "get", "update"),
            "leader election and per-target locks",
        ),
        Need(OWN, own, "", "configmaps", ("create",), "creating the shared run state"),
        Need(
            OWN,
            own,
            "",
            "configmaps",
            ("get", "update"),
            "the shared run state",
            (STATE_CONFIGMAP,),
        ),
    ]


def parse_namespaces(text: str | None) -> tuple[str, ...] | None:
    """``--namespaces a,b`` -> ("a", "b"); ConfigError for a name that cannot exist."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [
        n for n in names if targets.name_problem(n, targets.TARGET_LABELS["namespace"]) is not None
    ]
    if bad or not names:
        why = f"; not namespace names: {', '.join(bad)}" if bad else ""
        raise ConfigError(
            f"--namespaces {text!r}: expected namespace names separated by "
            f"commas, e.g. shop,payments{why}"
        )
    return names


def place(
    all_needs: Iterable[Need],
    *,
    namespaces: Sequence[str] | None,
    cluster_wide_evictions: bool = False,
    own_namespace: str,
) -> list[Grant]:
    """Each need in the namespaces it applies to; ConfigError naming every playbook that
    may act in any namespace when ``namespaces`` (``--namespaces``) is None."""
    unplaced: dict[str, set[str]] = defaultdict(set)
    out: list[Grant] = []
    for need in all_needs:
        w, resource = need.where, need.resource
        if w.kind == "cluster" or (
            w.kind == "every" and cluster_wide_evictions and resource == "pods/eviction"
        ):
            spots: list[str | None] = [None]
        elif w.kind == "own":
            spots = [own_namespace]
        elif w.kind == "fixed":
            spots = [w.namespace]
        elif not w.needs_given:
            spots = [n for n in w.allow or () if n not in w.deny]
        elif namespaces is None:
            unplaced[need.playbook].add(need.reason.split(" (")[0])
            continue
        else:
            spots = [n for n in namespaces if n not in w.deny]
        out += [
            Grant(s, need.group, resource, need.verbs, need.resource_names, need.playbook)
            for s in spots
        ]
    if unplaced:
        which = "; ".join(f"{pb} ({', '.join(sorted(a))})" for pb, a in sorted(unplaced.items()))
        raise ConfigError(
            "refusing to grant cluster-wide write access: these playbooks may act in any "
            f"namespace (no guards.namespaces.allow): {which}. Name the namespaces they may "
            "act in with --namespaces a,b (their deny lists still apply), or give each an "
            "allow-list"
        )
    return out


def _rules(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    verbs: dict[tuple[str, str, tuple[str, ...]], set[str]] = defaultdict(set)
    for g in grants:
        verbs[(g.group, g.resource, g.resource_names)].update(g.verbs)
    by_verbs: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = defaultdict(list)
    for (group, resource, names), granted in sorted(verbs.items()):
        by_verbs[(group, tuple(sorted(granted)), names)].append(resource)
    rules = []
    for (group, vs, names), resources in sorted(by_verbs.items()):
        rule: dict[str, Any] = {"apiGroups": [group], "resources": sorted(resources)}
        if names:
            rule["resourceNames"] = list(names)
        rule["verbs"] = list(vs)
        rules.append(rule)
    return rules


def _pair(
    kind: str,
    name: str,
    namespace: str | None,
    rules: list[dict[str, Any]],
    subject: list[dict[str, str]],
    playbooks: str,
) -> list[dict[str, Any]]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {"app.kubernetes.io/name": "vigil-remediator"}
    role = {
        "apiVersion": RBAC_API,
        "kind": kind,
        "metadata": {**meta, "annotations": {"vigil.dev/playbooks": playbooks}},
        "rules": rules,
    }
    binding = {
        "apiVersion": RBAC_API,
        "kind": f"{kind}Binding",
        "metadata": dict(meta),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": subject,
    }
    return [role, binding]


def objects(
    grants: Sequence[Grant], *, namespace: str, service_account: str = "vigil-remediator"
) -> list[dict[str, Any]]:
    """The Role/RoleBinding per namespace, the ClusterRole/ClusterRoleBinding when some
    grant is cluster-wide, and the remediator's own Role, as dicts ready for YAML."""
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
    own = [g for g in grants if g.playbook == OWN]
    acting = [g for g in grants if g.playbook != OWN]
    out: list[dict[str, Any]] = []

    def who(gs: Iterable[Grant]) -> str:
        return ", ".join(sorted({g.playbook for g in gs}))

    cluster = [g for g in acting if g.namespace is None]
    if cluster:
        out += _pair("ClusterRole", service_account, None, _rules(cluster), subject, who(cluster))
    for ns in sorted({g.namespace for g in acting if g.namespace is not None}):
        here = [g for g in acting if g.namespace == ns]
        out += _pair("Role", service_account, ns, _rules(here), subject, who(here))
    if own:
        out += _pair(
            "Role", f"{service_account}-coordination", namespace, _rules(own), subject, OWN
        )
    return out


def render(
    catalog: Catalog,
    registry: ActionRegistry,
    *,
    namespace: str,
    service_account: str = "vigil-remediator",
    replicas: bool = True,
    namespaces: Sequence[str] | None = None,
    cluster_wide_evictions: bool = False,
) -> list[dict[str, Any]]:
    """The RBAC objects for ``catalog``: ``needs`` placed by ``place``, then ``objects``."""
    all_needs = needs(catalog, registry) + (own_needs() if replicas else [])
    grants = place(
        all_needs,
        namespaces=namespaces,
        own_namespace=namespace,
        cluster_wide_evictions=cluster_wide_evictions,
    )
    return objects(grants, namespace=namespace, service_account=service_account)


def notes(
    catalog: Catalog,
    registry: ActionRegistry,
    *,
    namespaces: Sequence[str] | None,
    cluster_wide_evictions: bool = False,
) -> list[str]:
    """What the output's reader must know: where ``--namespaces`` was used instead of an
    allow-list, and why each cluster-wide rule is there."""
    found = needs(catalog, registry)
    lines = []
    for pb, where in sorted(
        {(n.playbook, n.where) for n in found if n.where.needs_given},
        key=lambda p: (p[0], p[1].kind),
    ):
        if where.kind == "every" and cluster_wide_evictions:
            continue
        kept = [n for n in namespaces or () if n not in where.deny]
        lines.append(
            f"{pb}: no namespace allow-list bounds it; granted in --namespaces "
            f"minus its deny list: {', '.join(kept) or 'none'}"
        )
    for need in found:
        cluster = need.where.kind == "cluster" or (
            need.where.kind == "every"
            and cluster_wide_evictions
            and need.resource == "pods/eviction"
        )
        if cluster:
            lines.append(
                f"{need.playbook}: cluster-wide {'/'.join(need.verbs)} "
                f"{need.group or 'core'}/{need.resource}: {need.reason}"
            )
    if any(n.where.kind == "every" for n in found) and not cluster_wide_evictions:
        lines.append(
            "kubernetes.drain evicts only in the namespaces above; a node running "
            "pods elsewhere drains incompletely (403) unless --cluster-wide-evictions"
        )
    return list(dict.fromkeys(lines))


def table(all_needs: Iterable[Need]) -> str:
    """A Markdown table of ``all_needs``: one row per playbook, place, reason and verbs."""
    order = {"cluster": 0, "fixed": 1, "alert": 2, "given": 3, "every": 4, "own": 5}
    rows: dict[tuple[str, int, str, str, str], list[str]] = defaultdict(list)
    for n in all_needs:
        name = f"{n.group}/{n.resource}" if n.group else n.resource
        if n.resource_names:
            name += f" ({', '.join(n.resource_names)} only)"
        key = (
            n.playbook,
            order[n.where.kind],
            n.where.describe(),
            n.reason,
            ", ".join(sorted(n.verbs)),
        )
        rows[key].append(name)
    lines = ["| playbook | where | resources | verbs | needed by |", "|---|---|---|---|---|"]
    for (pb, _, where, reason, verbs), names in sorted(rows.items()):
        lines.append(f"| {pb} | {where} | {', '.join(sorted(set(names)))} | {verbs} | {reason} |")
    return "\n".join(lines) + "\n"


def allows(
    objects: list[dict[str, Any]],
    *,
    group: str,
    resource: str,
    verb: str,
    namespace: str | None,
    name: str | None = None,
) -> bool:
    """Whether the rendered RBAC grants ``verb`` on ``group/resource`` in ``namespace``
    (None or "": a cluster-wide request) for the object ``name`` (tests check the API
    double's request log against it)."""
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        if obj["kind"] == "Role" and obj["metadata"]["namespace"] != (namespace or None):
            continue
        for rule in obj["rules"]:
            names = rule.get("resourceNames")
            if names and name not in names:
                continue
            if (
                group in rule["apiGroups"]
                and resource in rule["resources"]
                and verb in rule["verbs"]
            ):
                return True
    return False
