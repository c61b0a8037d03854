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
- ``files/rbac.yaml``: the RBAC ``vigil-remediator rbac`` prints for the shipped
  playbooks, in a namespace-free form the templates expand for the release's namespace
  and ``remediator.rbac.actInNamespaces``: the cluster rules, the coordination rules, the
  rules of a namespace no deny list names (``"*"``) and of each namespace one does.
- ``files/routes.yaml``: per shipped playbook, the alertnames it matches (the
  AlertmanagerConfig routes them to the remediator) and whether it wants resolved alerts.
- ``examples/kube-prometheus-stack.yaml``: kube-prometheus-stack values for Vigil installed
  with ``examples/vigil.yaml``: one remote_write per detector shard (deploy/config/
  remote-write.yaml's selection, then the hashmod share), the remote-write receiver (the
  detector's write-back) and the AlertmanagerConfig matcher strategy.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
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

CHART = HERE / "vigil"
GENERATED_DIRS = ("files/rules", "files/dashboards", "files/playbooks", "files/runbooks")
# namespaces the RBAC is generated in, to be replaced by the release's; valid names that
# no playbook names (checked)
RELEASE_SENTINEL = "vigil-chart-release"
ANY_SENTINEL = "vigil-chart-any-namespace"
EXAMPLE_VALUES = "examples/vigil.yaml"
EXAMPLE_STACK = "examples/kube-prometheus-stack.yaml"
# what the examples assume: `helm install vigil deploy/charts/vigil -n monitoring`
EXAMPLE_RELEASE = "vigil"
EXAMPLE_NAMESPACE = "monitoring"
DETECTOR_WRITE_URL = ("http://{fullname}-detector-{i}.{fullname}-detector-headless."
                      "{namespace}.svc:9420/api/v1/write")


class ChartError(Exception):
    """A source cannot be turned into its chart form."""


def header(*sources: str) -> str:
    return cluster.header(*sources).replace("deploy/cluster/generate.py",
                                            "deploy/charts/generate.py")


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
                raise ChartError(f"{cluster._rel(path)}: namespace{m.op}{m.value!r} is not a "
                                 f"list of names; give the chart remediator.rbac.manifests")
            names.update(parts)
    if {RELEASE_SENTINEL, ANY_SENTINEL} & names:
        raise ChartError(f"a playbook names the sentinel namespace {RELEASE_SENTINEL}/"
                         f"{ANY_SENTINEL}; rename them in deploy/charts/generate.py")
    return sorted(names)


def rbac_command(namespaces: list[str]) -> list[str]:
    return ["rbac", "--playbooks", "playbooks", "--namespace", RELEASE_SENTINEL,
            "--namespaces", ",".join(namespaces)]


def rbac(root: Path) -> str:
    specials = denied_namespaces(root)
    args = rbac_command([ANY_SENTINEL, *specials])
    done = subprocess.run([sys.executable, "-m", "remediator", *args], cwd=root,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ChartError(f"vigil-remediator rbac failed ({done.returncode}):\n{done.stderr}")
    cluster_role: dict[str, Any] | None = None
    coordination: dict[str, Any] | None = None
    namespaced: dict[str, Any] = {name: None for name in specials}
    for doc in yaml.safe_load_all(done.stdout):
        if not doc or doc["kind"] not in ("Role", "ClusterRole"):
            continue
        shape = {"annotations": doc["metadata"].get("annotations") or {},
                 "rules": doc.get("rules") or []}
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] == "ClusterRole":
            cluster_role = shape
        elif doc["metadata"]["name"].endswith("-coordination"):
            coordination = shape
        else:
            namespaced["*" if namespace == ANY_SENTINEL else namespace] = shape
    if coordination is None:
        raise ChartError("vigil-remediator rbac printed no coordination Role")
    data = {"clusterRole": cluster_role, "coordination": coordination,
            "namespaced": namespaced}
    note = ("# The Role of a namespace in remediator.rbac.actInNamespaces is namespaced[that\n"
            "# namespace] when a deny list names it (null: no Role there), else namespaced['*'].\n")
    command = " ".join(rbac_command([ANY_SENTINEL, *specials]))
    return header(f"python -m remediator {command}") + note + cluster.dump(data)


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


def stack_values(*, shards: int, fullname: str, namespace: str,
                 stack_namespace: str = EXAMPLE_NAMESPACE) -> str:
    """kube-prometheus-stack values for a Vigil release: its chart fullname, namespace and
    detector.shards (``--kube-prometheus-stack`` prints them for yours)."""
    if not 1 <= shards <= 64:
        raise ChartError(f"shards: {shards} is not in 1..64 (values.schema.json)")
    if not _NAME.match(fullname) or not _NAME.match(namespace):
        raise ChartError(f"{fullname!r}/{namespace!r}: not Kubernetes names")
    urls = [DETECTOR_WRITE_URL.format(fullname=fullname, i=i, namespace=namespace)
            for i in range(shards)]
    token = {"name": f"{fullname}-detector-token", "key": "token"}
    doc = {
        "prometheus": {"prometheusSpec": {
            # the detector's write-back (anomaly_score and bands) and nothing else
            "enableRemoteWriteReceiver": True,
            "remoteWrite": cluster.operator_remote_write(urls, token),
        }},
        "alertmanager": {"alertmanagerSpec": {
            # the operator's default (OnNamespace) would add namespace="<Vigil's>" to the
            # remediator's route; in Alertmanager's own namespace it adds none
            "alertmanagerConfigMatcherStrategy": {
                "type": "OnNamespaceExceptForAlertmanagerNamespace"
                if namespace == stack_namespace else "None"},
        }},
    }
    note = (f"# kube-prometheus-stack values for Vigil (chart fullname {fullname}) in the "
            f"namespace {namespace}\n# with {shards} detector shard(s): merge them into "
            "your own (docs/install-kube-prometheus-stack.md).\n")
    if namespace != stack_namespace:
        note += (f"# Prometheus reads the token Secret {token['name']} in its own namespace "
                 f"({stack_namespace}):\n# copy it there from {namespace}.\n")
    return header(f"deploy/charts/vigil/{EXAMPLE_VALUES} (detector.shards) or the command line",
                  "deploy/config/remote-write.yaml (through deploy/config/render.py)") \
        + note + cluster.dump(doc)


# --- driver ----------------------------------------------------------------------------

def build(root: Path = ROOT, chart: Path = CHART) -> dict[str, bytes]:
    """Every generated file: path relative to the chart -> content."""
    out = copies(root)
    out["files/rbac.yaml"] = rbac(root).encode()
    out["files/routes.yaml"] = routes(root).encode()
    out[EXAMPLE_STACK] = example_stack(chart).encode()
    return out


def write(files: Mapping[str, bytes], out: Path) -> None:
    for folder in GENERATED_DIRS:
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def stale(files: Mapping[str, bytes], out: Path = CHART) -> list[str]:
    wrong = [rel for rel, content in files.items()
             if not (out / rel).is_file() or (out / rel).read_bytes() != content]
    for folder in GENERATED_DIRS:
        if (out / folder).is_dir():
            wrong += [p.relative_to(out).as_posix() for p in sorted((out / folder).rglob("*"))
                      if p.is_file() and p.relative_to(out).as_posix() not in files]
    return sorted(wrong)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--out", type=Path, default=CHART, help="the chart directory")
    parser.add_argument("--kube-prometheus-stack", action="store_true",
                        help="print kube-prometheus-stack values for --shards, --fullname, "
                             "--namespace and exit")
    parser.add_argument("--shards", type=int, default=1, help="detector.shards")
    parser.add_argument("--fullname", default=EXAMPLE_RELEASE,
                        help="the chart's fullname (the release name when it contains vigil)")
    parser.add_argument("--namespace", default=EXAMPLE_NAMESPACE, help="Vigil's namespace")
    parser.add_argument("--stack-namespace", default=EXAMPLE_NAMESPACE,
                        help="where Prometheus and Alertmanager run")
    args = parser.parse_args(argv)
    if args.kube_prometheus_stack:
        try:
            print(stack_values(shards=args.shards, fullname=args.fullname,
                               namespace=args.namespace,
                               stack_namespace=args.stack_namespace), end="")
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
