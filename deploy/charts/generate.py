"""Writes every file of the Vigil chart (deploy/charts/vigil/) derived from another source.

    .venv/bin/python deploy/charts/generate.py           # rewrite the generated files
    .venv/bin/python deploy/charts/generate.py --check   # exit 1 if any is out of date
    .venv/bin/python deploy/charts/generate.py --kube-prometheus-stack --shards 3 \
        --fullname vigil --namespace monitoring          # values for your Prometheus

deploy/config/ stays the origin of rules and dashboards, playbooks/ of the playbooks,
docs/runbooks/ of the runbooks; tests/deploy/test_chart.py fails while a copy is stale.
What it writes (paths relative to deploy/charts/vigil/):

- ``files/rules/<name>.yaml``: deploy/config/rules/*.yaml (not the local demo's), byte for
  byte; templates/prometheusrule.yaml makes one PrometheusRule each and sets every
  alert's ``runbook_url`` to the detector's ``/runbooks/<alertname>``.
- ``files/dashboards/<name>.json``: deploy/config/dashboards/*.json, byte for byte.
- ``files/playbooks/<name>.yaml`` and ``files/runbooks/<name>.md``: playbooks/*.yaml and
  docs/runbooks/*.md, byte for byte.
- ``files/rbac/<playbook>.yaml``: per shipped playbook, the rules ``vigil-remediator
  rbac`` prints for it alone, in a namespace-free form: its cluster rules, its rules in a
  namespace no deny list names (``"*"``) and in each one some deny list names, and those
  of namespaces it acts in whatever ``--namespaces`` says. templates/remediator-rbac.yaml
  merges the files of the playbooks a release keeps (remediator.shippedPlaybooks) for its
  ``remediator.rbac.actInNamespaces``, as ``vigil-remediator rbac`` merges them.
- ``files/rbac.yaml``: the remediator's own Role (Leases, state ConfigMap).
- ``files/routes.yaml``: per shipped playbook, the alertnames it matches (the
  AlertmanagerConfig routes them to the remediator) and whether it wants resolved alerts.
- ``examples/kube-prometheus-stack.yaml``: kube-prometheus-stack values for Vigil installed
  with ``examples/vigil.yaml``: one remote_write per detector shard (deploy/config/
  remote-write.yaml's selection, then the hashmod share), the remote-write receiver (the
  detector's write-back) and the AlertmanagerConfig matcher strategy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:  # run as a script: deploy.* must import
    sys.path.insert(0, str(ROOT))

from deploy.cluster import generate as cluster  # noqa: E402 (after the path fix above)
from deploy.generated import stale_paths, write_tree  # noqa: E402

CHART = HERE / "vigil"
GENERATED_DIRS = (
    "files/rules",
    "files/dashboards",
    "files/playbooks",
    "files/runbooks",
    "files/rbac",
)
# namespaces the RBAC is generated in, to be replaced by the release's; valid names that
# no playbook names (checked)
RELEASE_SENTINEL = "vigil-chart-release"
ANY_SENTINEL = "vigil-chart-any-namespace"
EXAMPLE_VALUES = "examples/vigil.yaml"
EXAMPLE_STACK = "examples/kube-prometheus-stack.yaml"
# what the examples assume: `helm install vigil deploy/charts/vigil -n monitoring`
EXAMPLE_RELEASE = "vigil"
EXAMPLE_NAMESPACE = "monitoring"
DETECTOR_WRITE_URL = (
    "http://{fullname}-detector-{i}.{fullname}-detector-headless.{namespace}.svc:9420/api/v1/write"
)


class ChartError(Exception):
    """A source cannot be turned into its chart form."""


def header(*sources: str) -> str:
    return cluster.header(*sources).replace(
        "deploy/cluster/generate.py", "deploy/charts/generate.py"
    )


def copies(root: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for path in cluster.rule_files(root):
        out[f"files/rules/{path.name}"] = path.read_bytes()
    for path in sorted((root / "deploy/config/dashboards").glob("*.json")):
        out[f"files/dashboards/{path.name}"] = path.read_bytes()
    for path in cluster.playbook_files(root):
        out[f"files/playbooks/{path.stem}.yaml"] = path.read_bytes()
    for path in sorted((root / "docs/runbooks").glob("*.md")):
        if path.name != "README.md":
            out[f"files/runbooks/{path.name}"] = path.read_bytes()
    return out


# --- RBAC --------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def denied_namespaces(root: Path) -> list[str]:
    """Every namespace some shipped playbook's deny list or negative namespace matcher
    names: its Role may differ from the one of any other namespace."""
    from remediator.catalog.matchers import parse_matcher  # the remediator's own syntax

    names: set[str] = set()
    for path in cluster.playbook_files(root):
        spec = (cluster._load(path) or {}).get("spec") or {}
        names.update(((spec.get("guards") or {}).get("namespaces") or {}).get("deny") or [])
        for text in (spec.get("match") or {}).get("matchers") or ():
            m = parse_matcher(text)
            if m.name != "namespace" or m.op not in ("!=", "!~"):
                continue
            parts = m.value.split("|") if m.op == "!~" else [m.value]
            if not all(_NAME.match(p) for p in parts):
                raise ChartError(
                    f"{cluster._rel(path)}: namespace{m.op}{m.value!r} is not a "
                    f"list of names; give the chart remediator.rbac.manifests"
                )
            names.update(parts)
    if {RELEASE_SENTINEL, ANY_SENTINEL} & names:
        raise ChartError(
            f"a playbook names the sentinel namespace {RELEASE_SENTINEL}/"
            f"{ANY_SENTINEL}; rename them in deploy/charts/generate.py"
        )
    return sorted(names)


def rbac_command(playbooks: str, namespaces: list[str]) -> list[str]:
    return [
        "rbac",
        "--playbooks",
        playbooks,
        "--namespace",
        RELEASE_SENTINEL,
        "--namespaces",
        ",".join(namespaces),
    ]


def run_rbac(root: Path, playbooks: str, namespaces: list[str]) -> list[dict[str, Any]]:
    """The Role and ClusterRole objects ``vigil-remediator rbac`` prints: its own entry
    point, run in this process (one import for every playbook, not one per run)."""
    from remediator.__main__ import main as remediator_main

    out, err = io.StringIO(), io.StringIO()
    args = rbac_command(str(root / playbooks), namespaces)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = remediator_main(args)
    if code != 0:
        raise ChartError(
            f"vigil-remediator {' '.join(rbac_command(playbooks, namespaces))} "
            f"failed ({code}):\n{err.getvalue()}"
        )
    return [
        doc
        for doc in yaml.safe_load_all(out.getvalue())
        if doc and doc["kind"] in ("Role", "ClusterRole")
    ]


def _is_coordination(doc: Mapping[str, Any]) -> bool:
    return bool(doc["kind"] == "Role" and doc["metadata"]["name"].endswith("-coordination"))


def coordination(root: Path) -> str:
    """files/rbac.yaml: the remediator's own Role (its Leases and state ConfigMap), which
    every release gets whatever playbooks it keeps."""
    docs = run_rbac(root, "playbooks", [ANY_SENTINEL])
    own = [d for d in docs if _is_coordination(d)]
    if len(own) != 1 or own[0]["metadata"].get("namespace") != RELEASE_SENTINEL:
        raise ChartError("vigil-remediator rbac printed no coordination Role in --namespace")
    data = {
        "coordination": {
            "annotations": own[0]["metadata"].get("annotations") or {},
            "rules": own[0].get("rules") or [],
        }
    }
    command = " ".join(rbac_command("playbooks", [ANY_SENTINEL]))
    return header(f"python -m remediator {command} (its -coordination Role)") + cluster.dump(data)


def playbook_rbac(root: Path, path: Path, specials: list[str]) -> str:
    """files/rbac/<playbook>.yaml: the rules ``vigil-remediator rbac`` prints for that
    playbook alone, as they are (templates/remediator-rbac.yaml merges those of the kept
    playbooks as remediator/rbac.py merges grants):

    - ``clusterRole``: its ClusterRole's rules ([]: none);
    - ``namespaced``: under ``"*"`` its Role's rules in a namespace of
      remediator.rbac.actInNamespaces that no shipped playbook's deny list names, under
      a namespace some deny list names the rules there when they differ ([]: no Role);
    - ``fixed``: the rules of namespaces it acts in whatever actInNamespaces says (a
      literal namespace, an allow-list), by namespace.
    """
    rel = path.relative_to(root).as_posix()
    name = path.stem
    given = run_rbac(root, rel, [ANY_SENTINEL, *specials])
    alone = run_rbac(root, rel, [ANY_SENTINEL])  # the Roles --namespaces adds nothing to
    cluster_rules: list[Any] = []
    namespaced: dict[str, list[Any]] = {}
    fixed: dict[str, list[Any]] = {}
    for run, docs in (("given", given), ("alone", alone)):
        for doc in docs:
            if _is_coordination(doc):
                continue
            who = (doc["metadata"].get("annotations") or {}).get("vigil.dev/playbooks")
            if who != name:
                raise ChartError(
                    f"{rel}: vigil-remediator rbac says the {doc['kind']} is "
                    f"for {who!r}, not {name!r}"
                )
            namespace = doc["metadata"].get("namespace")
            rules = doc.get("rules") or []
            if doc["kind"] == "ClusterRole":
                cluster_rules = rules
            elif namespace == RELEASE_SENTINEL:
                raise ChartError(
                    f"{rel}: acts in {RELEASE_SENTINEL}; rename the sentinel "
                    "in deploy/charts/generate.py"
                )
            elif run == "given" and (namespace == ANY_SENTINEL or namespace in specials):
                namespaced["*" if namespace == ANY_SENTINEL else namespace] = rules
            elif run == "alone" and namespace != ANY_SENTINEL:
                fixed[namespace] = rules
    anywhere = namespaced.setdefault("*", [])
    # a deny-listed namespace's Role: the rules there, when they are not those of "*"
    special = {ns: namespaced.get(ns, []) for ns in specials}
    data = {
        "clusterRole": cluster_rules,
        "namespaced": {"*": anywhere, **{ns: r for ns, r in special.items() if r != anywhere}},
        "fixed": dict(sorted(fixed.items())),
    }
    commands = [
        f"python -m remediator {' '.join(rbac_command(rel, ns))}"
        for ns in ([ANY_SENTINEL, *specials], [ANY_SENTINEL])
    ]
    note = (
        "# templates/remediator-rbac.yaml merges the kept playbooks' files. namespaced['*']:\n"
        "# the Role's rules in a namespace of remediator.rbac.actInNamespaces no deny list\n"
        "# names; namespaced[<namespace>]: in that one ([]: no Role); fixed: namespaces it\n"
        "# acts in whatever actInNamespaces says.\n"
    )
    return header(*commands) + note + cluster.dump(data)


def rbac_files(root: Path) -> dict[str, str]:
    specials = denied_namespaces(root)
    out = {"files/rbac.yaml": coordination(root)}
    for path in cluster.playbook_files(root):
        out[f"files/rbac/{path.stem}.yaml"] = playbook_rbac(root, path, specials)
    return out


# --- routes --------------------------------------------------------------------------------


def routes(root: Path) -> str:
    from remediator.catalog.matchers import parse_matcher

    out: dict[str, Any] = {}
    for path in cluster.playbook_files(root):
        match = ((cluster._load(path) or {}).get("spec") or {}).get("match") or {}
        exact: list[str] = []
        regexes: list[str] = []
        if "alertname" in (match.get("labels") or {}):
            exact.append(str(match["labels"]["alertname"]))
        for text in match.get("matchers") or ():
            m = parse_matcher(text)
            if m.name == "alertname" and m.op == "=":
                exact.append(m.value)
            elif m.name == "alertname" and m.op == "=~":
                regexes.append(m.value)
        out[path.stem] = {
            # Alertmanager anchors the regex: alternatives compose as they are
            "alertnames": sorted({re.escape(n) for n in exact}) + sorted(set(regexes)),
            "any": not exact and not regexes,
            "resolved": match.get("status") in ("resolved", "any"),
        }
    return header("playbooks/*.yaml (spec.match)") + cluster.dump({"playbooks": out})


# --- the kube-prometheus-stack example ---------------------------------------------------


def example_stack(chart: Path) -> str:
    values = cluster._load(chart / EXAMPLE_VALUES) or {}
    shards = int((values.get("detector") or {}).get("shards", 1))
    return stack_values(shards=shards, fullname=EXAMPLE_RELEASE, namespace=EXAMPLE_NAMESPACE)


def stack_values(
    *, shards: int, fullname: str, namespace: str, stack_namespace: str = EXAMPLE_NAMESPACE
) -> str:
    """kube-prometheus-stack values for a Vigil release: its chart fullname, namespace and
    detector.shards (``--kube-prometheus-stack`` prints them for yours)."""
    if not 1 <= shards <= 64:
        raise ChartError(f"shards: {shards} is not in 1..64 (values.schema.json)")
    if not _NAME.match(fullname) or not _NAME.match(namespace):
        raise ChartError(f"{fullname!r}/{namespace!r}: not Kubernetes names")
    urls = [
        DETECTOR_WRITE_URL.format(fullname=fullname, i=i, namespace=namespace)
        for i in range(shards)
    ]
    token = {"name": f"{fullname}-detector-token", "key": "token"}
    doc = {
        "prometheus": {
            "prometheusSpec": {
                # the detector's write-back (anomaly_score and bands) and nothing else
                "enableRemoteWriteReceiver": True,
                "remoteWrite": cluster.operator_remote_write(urls, token),
            }
        },
        "alertmanager": {
            "alertmanagerSpec": {
                # the operator's default (OnNamespace) would add namespace="<Vigil's>" to the
                # remediator's route; in Alertmanager's own namespace it adds none
                "alertmanagerConfigMatcherStrategy": {
                    "type": "OnNamespaceExceptForAlertmanagerNamespace"
                    if namespace == stack_namespace
                    else "None"
                },
            }
        },
    }
    note = (
        f"# kube-prometheus-stack values for Vigil (chart fullname {fullname}) in the "
        f"namespace {namespace}\n# with {shards} detector shard(s): merge them into "
        "your own (docs/install-kube-prometheus-stack.md).\n"
    )
    if namespace != stack_namespace:
        note += (
            f"# Prometheus reads the token Secret {token['name']} in its own namespace "
            f"({stack_namespace}):\n# copy it there from {namespace}.\n"
        )
    return (
        header(
            f"deploy/charts/vigil/{EXAMPLE_VALUES} (detector.shards) or the command line",
            "deploy/config/remote-write.yaml (through deploy/config/render.py)",
        )
        + note
        + cluster.dump(doc)
    )


# --- driver ----------------------------------------------------------------------------


def build(root: Path = ROOT, chart: Path = CHART) -> dict[str, bytes]:
    """Every generated file: path relative to the chart -> content."""
    out = copies(root)
    out.update({rel: text.encode() for rel, text in rbac_files(root).items()})
    out["files/routes.yaml"] = routes(root).encode()
    out[EXAMPLE_STACK] = example_stack(chart).encode()
    return out


def write(files: Mapping[str, bytes], out: Path) -> None:
    write_tree(files, out, GENERATED_DIRS)


def stale(files: Mapping[str, bytes], out: Path = CHART) -> list[str]:
    """Generated paths whose file under ``out`` differs, is missing or should not exist."""
    return stale_paths(files, out, GENERATED_DIRS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--out", type=Path, default=CHART, help="the chart directory")
    parser.add_argument(
        "--kube-prometheus-stack",
        action="store_true",
        help="print kube-prometheus-stack values for --shards, --fullname, --namespace and exit",
    )
    parser.add_argument("--shards", type=int, default=1, help="detector.shards")
    parser.add_argument(
        "--fullname",
        default=EXAMPLE_RELEASE,
        help="the chart's fullname (the release name when it contains vigil)",
    )
    parser.add_argument("--namespace", default=EXAMPLE_NAMESPACE, help="Vigil's namespace")
    parser.add_argument(
        "--stack-namespace", default=EXAMPLE_NAMESPACE, help="where Prometheus and Alertmanager run"
    )
    args = parser.parse_args(argv)
    if args.kube_prometheus_stack:
        try:
            print(
                stack_values(
                    shards=args.shards,
                    fullname=args.fullname,
                    namespace=args.namespace,
                    stack_namespace=args.stack_namespace,
                ),
                end="",
            )
        except (ChartError, cluster.GenerateError, ValueError) as exc:
            print(f"generate.py: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        files = build(ROOT, args.out)
    except (ChartError, cluster.GenerateError, ValueError, OSError) as exc:
        print(f"generate.py: {exc}", file=sys.stderr)
        return 2
    if args.check:
        wrong = stale(files, args.out)
        for rel in wrong:
            print(f"stale: deploy/charts/vigil/{rel}", file=sys.stderr)
        if wrong:
            print("run: .venv/bin/python deploy/charts/generate.py", file=sys.stderr)
        return 1 if wrong else 0
    write(files, args.out)
    for rel in sorted(files):
        print(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
