"""The chart's remediator RBAC follows the playbooks it ships: for the kept set
(remediator.shippedPlaybooks: enabled, exclude) the rendered Roles and ClusterRole equal
what ``vigil-remediator rbac`` prints over exactly those playbooks, for the release's
namespace and remediator.rbac.actInNamespaces.

deploy/charts/generate.py writes one files/rbac/<playbook>.yaml per shipped playbook and
templates/remediator-rbac.yaml merges the kept ones (vigil.mergeRules in _helpers.tpl
merges rules as remediator/rbac.py does): these tests render with the real helm and run
the real CLI over a directory holding the kept playbooks only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy.charts import generate as chart_generate
from deploy.cluster import generate as cluster_generate
from tests.deploy.test_chart import (
    CHART,
    INLINE_PLAYBOOK,
    NAMESPACE,
    _essence,
    rbac_tool,
    remediator_rbac,
    template,
)
from tests.deploy.test_cluster import ROOT, load_all

Obj = dict[str, Any]
SHIPPED = [p.stem for p in cluster_generate.playbook_files(ROOT)]


def kept_dir(tmp: Path, names: list[str], source: Path = ROOT / "playbooks") -> Path:
    folder = tmp / "kept-playbooks"
    folder.mkdir()
    for name in names:
        shutil.copyfile(source / f"{name}.yaml", folder / f"{name}.yaml")
    return folder


def rendered_rbac(
    values: Obj, *, namespace: str, tmp: Path, chart: Path = CHART
) -> tuple[list[Obj], set[str]]:
    """The remediator's RBAC objects and the playbook files its ConfigMap carries."""
    done = template(values, namespace=namespace, chart=chart, tmp=tmp)
    assert done.returncode == 0, done.stderr
    objects = load_all(done.stdout)
    playbooks = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vigil-playbooks"
    ]
    files = set(playbooks[0]["data"] or {}) if playbooks else set()
    return remediator_rbac(objects), files


def test_there_is_one_rbac_file_per_shipped_playbook() -> None:
    assert len(SHIPPED) >= 3
    assert sorted(p.stem for p in (CHART / "files/rbac").glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize(
    "shipped,act_in,namespace",
    [
        pytest.param({}, ["default", "shop"], NAMESPACE, id="all-shipped"),
        pytest.param(
            {},
            ["default", "kube-system", "monitoring", "shop"],
            NAMESPACE,
            id="all-shipped-in-deny-listed-namespaces",
        ),
        pytest.param({"enabled": False}, ["default"], NAMESPACE, id="none"),
        pytest.param({"exclude": ["node-drain"]}, ["default"], NAMESPACE, id="node-drain-excluded"),
        pytest.param(
            {"exclude": ["crashloop-delete-pod", "rollback-bad-rollout"]},
            ["default", "kube-system", "monitoring"],
            "vigil",
            id="two-excluded",
        ),
    ],
)
def test_the_rbac_is_what_vigil_remediator_rbac_prints_for_the_kept_playbooks(
    shipped: Obj, act_in: list[str], namespace: str, tmp_path: Path
) -> None:
    kept = (
        []
        if shipped.get("enabled") is False
        else [n for n in SHIPPED if n not in shipped.get("exclude", [])]
    )
    got, files = rendered_rbac(
        {"remediator": {"shippedPlaybooks": shipped, "rbac": {"actInNamespaces": act_in}}},
        namespace=namespace,
        tmp=tmp_path,
    )
    assert files == {f"{n}.yaml" for n in kept}  # the RBAC's set is the shipped set
    want = rbac_tool(kept_dir(tmp_path, kept), namespace, act_in)
    assert _essence(got) == _essence(want)


def test_without_node_drain_nothing_is_granted_cluster_wide(tmp_path: Path) -> None:
    """The hostile review's case: no ClusterRole (nodes get/patch, pods list) once the
    only playbook that drains is left out, and none of its rights in `default`."""
    got, _ = rendered_rbac(
        {"remediator": {"shippedPlaybooks": {"exclude": ["node-drain"]}}},
        namespace=NAMESPACE,
        tmp=_mkdir(tmp_path / "a"),
    )
    assert not [o for o in got if o["kind"].startswith("ClusterRole")]
    (role,) = [
        o for o in got if o["kind"] == "Role" and o["metadata"].get("namespace") == "default"
    ]
    assert "node-drain" not in role["metadata"]["annotations"]["vigil.dev/playbooks"]
    assert not [r for r in role["rules"] if "pods/eviction" in r["resources"]]
    full, _ = rendered_rbac({}, namespace=NAMESPACE, tmp=_mkdir(tmp_path / "b"))
    (cluster_role,) = [o for o in full if o["kind"] == "ClusterRole"]
    assert cluster_role["metadata"]["annotations"] == {"vigil.dev/playbooks": "node-drain"}


def test_no_shipped_playbook_leaves_only_the_remediators_own_role(tmp_path: Path) -> None:
    got, files = rendered_rbac(
        {
            "remediator": {"shippedPlaybooks": {"enabled": False}},
            "playbooks": {"shop-restart": INLINE_PLAYBOOK},
        },
        namespace=NAMESPACE,
        tmp=tmp_path,
    )
    assert files == {"shop-restart.yaml"}
    # inline playbooks get no generated rights: they need remediator.rbac.manifests
    assert {(o["kind"], o["metadata"]["name"]) for o in got} == {
        ("Role", "vigil-remediator-coordination"),
        ("RoleBinding", "vigil-remediator-coordination"),
    }


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# A playbook with an allow-list acts in its namespaces whatever actInNamespaces says;
# `monitoring` is deny-listed by shipped playbooks, so its Role mixes both kinds of rules.
ALLOW_LISTED = """\
apiVersion: vigil/v1
kind: Playbook
metadata: {name: team-restart}
spec:
  match: {labels: {alertname: TeamSlow}}
  guards: {namespaces: {allow: [monitoring, team]}}
  steps:
    - name: restart
      action: kubernetes.rollout_restart
      params: {namespace: '{{ target.namespace }}', name: '{{ target.name }}'}
"""


@pytest.mark.parametrize("act_in", [["default"], ["default", "monitoring", "team"]])
def test_namespaces_a_playbook_names_get_their_role_whatever_act_in_namespaces_says(
    act_in: list[str], tmp_path: Path
) -> None:
    """The generator and the template with a playbook set that has an allow-list (the
    shipped ones have none): a copy of the chart whose files/ are regenerated for the
    shipped playbooks plus ALLOW_LISTED, compared with the CLI over the same set."""
    root = tmp_path / "root"
    shutil.copytree(ROOT / "playbooks", root / "playbooks")
    (root / "playbooks/team-restart.yaml").write_text(ALLOW_LISTED, encoding="utf-8")
    chart = tmp_path / "vigil"
    shutil.copytree(CHART, chart)
    files = {**chart_generate.rbac_files(root), "files/routes.yaml": chart_generate.routes(root)}
    files["files/playbooks/team-restart.yaml"] = ALLOW_LISTED
    for rel, text in files.items():
        (chart / rel).write_text(text, encoding="utf-8")
    fixed = load_all((chart / "files/rbac/team-restart.yaml").read_text())[0]["fixed"]
    assert set(fixed) == {"monitoring", "team"}
    render_dir = _mkdir(tmp_path / "render")
    got, playbooks = rendered_rbac(
        {"remediator": {"rbac": {"actInNamespaces": act_in}}},
        namespace=NAMESPACE,
        tmp=render_dir,
        chart=chart,
    )
    assert "team-restart.yaml" in playbooks
    want = rbac_tool(root / "playbooks", NAMESPACE, act_in)
    assert _essence(got) == _essence(want)
    roles = {o["metadata"]["namespace"] for o in got if o["kind"] == "Role"}
    assert {"monitoring", "team"} <= roles
    # and left out, its namespaces lose their Roles unless actInNamespaces names them
    got, _ = rendered_rbac(
        {
            "remediator": {
                "rbac": {"actInNamespaces": act_in},
                "shippedPlaybooks": {"exclude": ["team-restart"]},
            }
        },
        namespace=NAMESPACE,
        tmp=_mkdir(tmp_path / "without"),
        chart=chart,
    )
    (root / "playbooks/team-restart.yaml").unlink()
    want = rbac_tool(root / "playbooks", NAMESPACE, act_in)
    assert _essence(got) == _essence(want)
    assert ("team" in {o["metadata"].get("namespace") for o in got}) == ("team" in act_in)
