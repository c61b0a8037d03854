"""deploy/config/, checked offline with the real tools: promtool (Prometheus 2.42) checks
and unit-tests every rule file, amtool (Alertmanager 0.25) checks the routing tree and
routes every alert class, promtool checks a Prometheus config built from the rules and
the remote-write section; the remote-write relabelling is run on sample series."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.config import render
from remediator.catalog.matchers import Matcher, parse_matcher

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy/config"
RULE_FILES = sorted((CONFIG / "rules").glob("*.yaml"))
TEST_FILES = sorted((CONFIG / "tests").glob("*.yaml"))
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))
LOCAL_PLAYBOOKS = sorted((ROOT / "deploy/local/playbooks").glob("*.yaml"))
ALERTMANAGER = CONFIG / "alertmanager.yml"

SEVERITY_RECEIVER = {"critical": "pagerduty", "warning": "team-slack", "info": "team-email"}
REMEDIATOR = "vigil-remediator"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; `make test` installs it with apt-get")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in load(path)["groups"]:
        yield from group["rules"]


def alert_rules() -> list[dict[str, Any]]:
    return [r for p in RULE_FILES for r in rules(p) if "alert" in r]


def playbook_match(path: Path) -> tuple[dict[str, str], tuple[Matcher, ...]]:
    match = load(path)["spec"]["match"]
    return (
        dict(match.get("labels") or {}),
        tuple(parse_matcher(m) for m in match.get("matchers") or ()),
    )


def test_the_files_are_there() -> None:
    assert {p.name for p in RULE_FILES} >= {
        "vigil.yaml",
        "kubernetes.yaml",
        "node.yaml",
        "blackbox.yaml",
        "demo.yaml",
        "recording.yaml",
    }
    assert TEST_FILES and PLAYBOOKS


# --- promtool: rules -------------------------------------------------------------------


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    done = run(tool("promtool"), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    done = run(tool("promtool"), "test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def _unit_tests() -> Iterator[tuple[Path, list[Path], dict[str, Any]]]:
    """(test file, the rule files it loads, one of its tests)."""
    for path in TEST_FILES:
        doc = load(path)
        loaded = [(path.parent / f).resolve() for f in doc["rule_files"]]
        for case in doc["tests"]:
            yield path, loaded, case


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """promtool passes a case whose alertname no rule defines (nothing fires, as
    expected), so the names are cross-checked here; every alert needs a case proving it
    fires and one proving it stays quiet."""
    defined = {r["alert"] for r in alert_rules()}
    fires: set[str] = set()
    quiet: set[str] = set()
    problems = []
    for path, loaded, case in _unit_tests():
        names = {r["alert"] for p in loaded for r in rules(p) if "alert" in r}
        for check in case.get("alert_rule_test") or []:
            name = check["alertname"]
            if name not in names:
                problems.append(
                    f"{path.name}: {case.get('name')}: no rule {name} in {[p.name for p in loaded]}"
                )
            (fires if check.get("exp_alerts") else quiet).add(name)
    assert not problems, "\n".join(problems)
    assert not defined - fires, f"alerts without a case that fires: {sorted(defined - fires)}"
    assert not defined - quiet, f"alerts without a quiet case: {sorted(defined - quiet)}"


def test_every_firing_case_asserts_all_labels_and_annotations() -> None:
    for path, _, case in _unit_tests():
        for check in case.get("alert_rule_test") or []:
            for alert in check.get("exp_alerts") or []:
                where = f"{path.name}: {case.get('name')}: {check['alertname']}"
                assert "severity" in alert.get("exp_labels", {}), where
                assert {"summary", "description", "runbook"} <= set(
                    alert.get("exp_annotations", {})
                ), where


def test_every_recording_rule_is_tested() -> None:
    tested: set[str] = set()
    for _, loaded, case in _unit_tests():
        records = {r["record"] for p in loaded for r in rules(p) if "record" in r}
        for check in case.get("promql_expr_test") or []:
            tested |= {name for name in records if name in check["expr"]}
    defined = {r["record"] for p in RULE_FILES for r in rules(p) if "record" in r}
    assert defined, "no recording rules?"
    assert not defined - tested, f"recording rules without a test: {sorted(defined - tested)}"


def test_alert_conventions() -> None:
    """severity routes the alert; summary, description and the runbook path (the
    runbooks themselves come with issue 8) are what on-call reads."""
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITY_RECEIVER, name
        annotations = rule["annotations"]
        assert {"summary", "description"} <= set(annotations), name
        assert annotations["runbook"] == f"docs/runbooks/{name}.md", name
        assert "runbook_url" not in annotations, name


def test_the_alerts_carry_the_labels_their_playbooks_read() -> None:
    """Each playbook reacting to an alert of ours gets the labels its templates name, and
    a label a target can be resolved from when it acts on ``target``."""
    fired_labels: dict[str, set[str]] = {}
    for _, _, case in _unit_tests():
        for check in case.get("alert_rule_test") or []:
            for alert in check.get("exp_alerts") or []:
                fired_labels.setdefault(check["alertname"], set()).update(alert["exp_labels"])
    checked = 0
    for path in PLAYBOOKS:
        text = path.read_text(encoding="utf-8")
        wanted = set(re.findall(r"\{\{\s*labels\.(\w+)\s*\}\}", text))
        labels, matchers = playbook_match(path)
        for name, seen in fired_labels.items():
            if (
                not all(
                    m.matches({**labels, "alertname": name})
                    for m in matchers
                    if m.name == "alertname"
                )
                or labels.get("alertname", name) != name
            ):
                continue
            checked += 1
            assert wanted <= seen, f"{path.name} reads {sorted(wanted - seen)} of {name}"
            if "target." in text:
                assert seen & {"pod", "deployment", "statefulset", "daemonset", "node"}, (
                    f"{path.name}: {name} has no label to resolve a target from"
                )
    assert checked >= 8  # every Kubernetes and probe alert a shipped playbook takes


# --- the remote-write selection, run through Prometheus's relabelling semantics ----------


def _go_replacement(template: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", template)


def relabel(labels: Mapping[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabel.Process for the actions used here (anchored RE2 regexes,
    defaults regex (.*), separator ';', replacement $1, action replace; an empty result
    deletes the label; hashmod = the last 8 bytes of the MD5, big-endian, mod modulus)."""
    lb = dict(labels)
    for cfg in configs:
        action = cfg.get("action", "replace")
        regex = re.compile(f"(?:{cfg.get('regex', '(.*)')})\\Z")
        value = cfg.get("separator", ";").join(lb.get(n, "") for n in cfg.get("source_labels", []))
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace" and (m := regex.match(value)):
            result = m.expand(_go_replacement(str(cfg.get("replacement", "$1"))))
            if result:
                lb[cfg["target_label"]] = result
            else:
                lb.pop(cfg["target_label"], None)
        elif action == "hashmod":
            digest = hashlib.md5(value.encode()).digest()
            lb[cfg["target_label"]] = str(int.from_bytes(digest[8:], "big") % cfg["modulus"])
        elif action == "labeldrop":
            lb = {k: v for k, v in lb.items() if not regex.match(k)}
        elif action not in ("keep", "drop", "replace"):
            raise AssertionError(f"action {action} not modelled")
    return lb


def series(text: str) -> dict[str, str]:
    name, _, rest = text.partition("{")
    labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return {"__name__": name, **labels}


KEPT = [
    'demo_requests_total{job="demo-shop", instance="127.0.0.1:8080", code="500"}',
    'demo_request_duration_seconds_count{job="demo-shop", instance="127.0.0.1:8080"}',
    'demo_memory_bytes{job="demo-shop", instance="127.0.0.1:8080"}',
    'job:demo_errors:ratio_rate1m{job="demo-shop"}',
    'node_cpu_seconds_total{job="node", instance="n1:9100", cpu="0", mode="user"}',
    'node_memory_MemAvailable_bytes{job="node", instance="n1:9100"}',
    'node_filesystem_avail_bytes{job="node", instance="n1:9100", fstype="ext4", mountpoint="/"}',
    'node_network_receive_errs_total{job="node", instance="n1:9100", device="eth0"}',
    'node_disk_io_time_seconds_total{job="node", instance="n1:9100", device="sda"}',
    'kube_pod_container_status_restarts_total{namespace="shop", pod="a-1", container="app"}',
    'kube_deployment_status_replicas_available{namespace="shop", deployment="a"}',
    'probe_success{job="blackbox", instance="https://shop.example.com/"}',
    'probe_duration_seconds{job="blackbox", instance="https://shop.example.com/"}',
    'http_requests_total{namespace="shop", pod="a-1", service="a", code="200"}',
    'http_request_duration_seconds_sum{namespace="shop", pod="a-1", service="a"}',
    'http_server_request_duration_seconds_count{namespace="shop", pod="a-1"}',
    'grpc_server_handled_total{namespace="shop", pod="a-1", grpc_code="OK"}',
]
DROPPED = [
    # Vigil's own write-back, even with the demo's job label
    'vigil_anomaly_score{job="demo-shop", metric_name="demo_requests_total"}',
    'vigil_anomaly_upper{job="demo-shop", metric_name="demo_requests_total"}',
    'demo_request_duration_seconds_bucket{job="demo-shop", le="0.25"}',
    'http_request_duration_seconds_bucket{namespace="shop", pod="a-1", le="0.5"}',
    'node_cpu_seconds_total{job="node", instance="n1:9100", cpu="0", mode="softirq"}',
    'node_network_receive_bytes_total{job="node", instance="n1:9100", device="veth12ab"}',
    'node_network_receive_bytes_total{job="node", instance="n1:9100", device="lo"}',
    'node_filesystem_avail_bytes{job="node", instance="n1:9100", fstype="tmpfs"}',
    'node_memory_Active_bytes{job="node", instance="n1:9100"}',
    'container_cpu_usage_seconds_total{namespace="shop", pod="a-1", container=""}',
    'container_memory_working_set_bytes{namespace="shop", pod="a-1", container="POD"}',
    'kube_pod_info{namespace="shop", pod="a-1", node="n1"}',
    'probe_http_status_code{job="blackbox", instance="https://shop.example.com/"}',
    'go_goroutines{job="vigil-detector", instance="d:9420"}',
    'vigil_samples_received_total{job="vigil-detector", instance="d:9420"}',
    'up{job="node", instance="n1:9100"}',
    'http_response_size_bytes_sum{namespace="shop", pod="a-1"}',
]


def _series_id(text: str) -> str:
    return text.replace(" ", "").replace('"', "")


@pytest.mark.parametrize("text", KEPT, ids=_series_id)
def test_remote_write_keeps(text: str) -> None:
    assert relabel(series(text), render.remote_write_relabel()) == series(text)


@pytest.mark.parametrize("text", DROPPED, ids=_series_id)
def test_remote_write_drops(text: str) -> None:
    assert relabel(series(text), render.remote_write_relabel()) is None


def test_remote_write_strips_cadvisor_churn_labels() -> None:
    got = relabel(
        series(
            'container_memory_working_set_bytes{namespace="shop", pod="a-1", container="app", '
            'id="/kubepods/pod1/c0ffee", name="k8s_app_a-1_shop_0", image="shop/a:1.4"}'
        ),
        render.remote_write_relabel(),
    )
    assert got == series(
        'container_memory_working_set_bytes{namespace="shop", pod="a-1", container="app"}'
    )


def test_remote_write_section_for_both_forms() -> None:
    """Only the fields the Prometheus Operator translation in deploy/cluster knows."""
    entry = load(CONFIG / "remote-write.yaml")["remote_write"]
    assert len(entry) == 1
    entry = entry[0]
    assert entry["queue_config"]["batch_send_deadline"] == "5s"
    assert entry["queue_config"]["max_samples_per_send"] == 2000
    assert set(entry) <= {
        "name",
        "url",
        "remote_timeout",
        "queue_config",
        "metadata_config",
        "write_relabel_configs",
    }
    for cfg in entry["write_relabel_configs"]:
        assert set(cfg) <= {
            "source_labels",
            "separator",
            "target_label",
            "regex",
            "modulus",
            "replacement",
            "action",
        }, cfg


def test_shards_partition_the_series_and_keep_a_pod_together() -> None:
    shards = 3
    entries = render.remote_write([f"http://d-{k}:9420/api/v1/write" for k in range(shards)])
    assert [e["name"] for e in entries] == ["vigil-0", "vigil-1", "vigil-2"]
    samples = [series(t) for t in KEPT]
    samples += [
        series(
            f'container_cpu_usage_seconds_total{{namespace="ns{i % 7}", '
            f'pod="p-{i}", container="app"}}'
        )
        for i in range(60)
    ]
    samples += [
        series(f'http_requests_total{{namespace="ns{i % 7}", pod="p-{i}", code="200"}}')
        for i in range(60)
    ]
    samples += [series(f'node_load1{{job="node", instance="node-{i}:9100"}}') for i in range(30)]
    where: dict[str, int] = {}
    for labels in samples:
        kept = [
            k
            for k, e in enumerate(entries)
            if relabel(labels, e["write_relabel_configs"]) is not None
        ]
        assert len(kept) == 1, (labels, kept)
        got = relabel(labels, entries[kept[0]]["write_relabel_configs"])
        assert got is not None and not any(n.startswith("__tmp") for n in got), got
        if "pod" in labels:  # one pod's series meet on one shard
            key = f"{labels['namespace']}/{labels['pod']}"
            assert where.setdefault(key, kept[0]) == kept[0], key
    counts = [
        sum(1 for labels in samples if relabel(labels, e["write_relabel_configs"]) is not None)
        for e in entries
    ]
    assert min(counts) > len(samples) / shards / 2, counts


# --- promtool: a Prometheus config made of these files ---------------------------------


@pytest.mark.parametrize("detectors", [1, 3])
def test_promtool_check_config(tmp_path: Path, detectors: int) -> None:
    token = tmp_path / "vigil-token"
    token.write_text("s3cret\n")
    text = render.render_prometheus(
        scrape_targets={
            "node": ["127.0.0.1:9100"],
            "demo-shop": ["127.0.0.1:8080"],
            "vigil-detector": ["127.0.0.1:9420"],
        },
        extra_scrape_configs=[
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": ["http://127.0.0.1:8080/healthz"]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": "127.0.0.1:9115"},
                ],
            }
        ],
        alertmanagers=["127.0.0.1:9093"],
        remote_write_urls=[f"http://127.0.0.1:{9420 + k}/api/v1/write" for k in range(detectors)],
        bearer_token_file=token,
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    done = run(tool("promtool"), "check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    for rule_file in RULE_FILES:
        assert str(rule_file) in done.stdout  # and each rule file was checked with it
    doc = yaml.safe_load(text)
    assert len(doc["remote_write"]) == detectors


# --- amtool: the routing tree ----------------------------------------------------------


def test_amtool_check_config() -> None:
    done = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr


def test_render_alertmanager_changes_only_the_remediator_url_and_secret_paths(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    url = "http://127.0.0.1:9421/webhook"
    text = render.render_alertmanager(remediator_url=url, secrets_dir=secrets)
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    done = run(tool("amtool"), "check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr

    rendered, source = yaml.safe_load(text), load(ALERTMANAGER)
    files: list[str] = []

    def restore(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k.endswith("_file"):
                    files.append(v)
                    v = f"/etc/alertmanager/secrets/{Path(v).name}"
                out[k] = restore(v)
            return out
        return [restore(v) for v in node] if isinstance(node, list) else node

    hook = next(r for r in rendered["receivers"] if r["name"] == REMEDIATOR)
    assert hook["webhook_configs"][0]["url"] == url
    hook["webhook_configs"][0]["url"] = "http://vigil-remediator:9421/webhook"
    assert restore(rendered) == source
    assert sorted(Path(f).name for f in files) == sorted(render.SECRET_FILES)
    assert all(Path(f).parent == secrets for f in files)


def test_render_alertmanager_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        render.render_alertmanager(remediator_url="vigil-remediator:9421", secrets_dir=tmp_path)


def routes(labels: Mapping[str, str], config: Path = ALERTMANAGER) -> set[str]:
    done = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return set(done.stdout.strip().split(","))


def playbook_alertnames() -> set[str]:
    names: set[str] = set()
    for path in PLAYBOOKS:
        labels, matchers = playbook_match(path)
        if "alertname" in labels:
            names.add(labels["alertname"])
        for m in matchers:
            if m.name == "alertname":
                names.update(m.value.split("|") if m.op == "=~" else [m.value])
    return names


@pytest.mark.parametrize(
    "rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}"
)
def test_every_alert_we_ship_reaches_its_receivers(rule: dict[str, Any]) -> None:
    """By severity (critical pages, warning to Slack, info by e-mail), and to the
    remediator as well when a playbook reacts to it."""
    labels = {"alertname": rule["alert"], "namespace": "shop", **rule["labels"]}
    expected = {SEVERITY_RECEIVER[rule["labels"]["severity"]]}
    if rule["alert"] in playbook_alertnames():
        expected.add(REMEDIATOR)
    assert routes(labels) == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # VigilAnomaly: to the remediator and to the team, paged when critical
        (
            {
                "alertname": "VigilAnomaly",
                "severity": "warning",
                "namespace": "shop",
                "service": "checkout",
                "metric_name": "http_request_errors_total",
            },
            {REMEDIATOR, "team-slack"},
        ),
        (
            {
                "alertname": "VigilAnomaly",
                "severity": "critical",
                "namespace": "shop",
                "service": "checkout",
            },
            {REMEDIATOR, "pagerduty"},
        ),
        (
            {
                "alertname": "VigilRemediationFailed",
                "severity": "critical",
                "playbook": "node-drain",
                "node": "node-3",
            },
            {"pagerduty"},
        ),
        (
            {
                "alertname": "VigilRemediationFailed",
                "severity": "warning",
                "playbook": "evicted-pods-cleanup",
            },
            {"team-slack"},
        ),
        # a run waiting for a person: to the team, never back to the remediator
        (
            {
                "alertname": "VigilRemediationAwaitingApproval",
                "severity": "warning",
                "playbook": "node-drain",
                "run_id": "01JX",
                "original_alertname": "KubeNodeNotReady",
                "node": "node-3",
            },
            {"team-slack"},
        ),
        # the playbooks' own escalations
        (
            {
                "alertname": "VigilCertificateNeedsRenewal",
                "severity": "critical",
                "team": "security",
            },
            {"pagerduty"},
        ),
        ({"alertname": "VigilHpaMaximumTooLow", "severity": "warning"}, {"team-slack"}),
        # anything we know nothing about lands in Slack
        ({"alertname": "SomethingElse"}, {"team-slack"}),
    ],
)
def test_alert_classes_reach_the_intended_receivers(
    labels: dict[str, str], expected: set[str]
) -> None:
    assert routes(labels) == expected


def test_each_waiting_run_is_a_notification_of_its_own() -> None:
    """VigilRemediationAwaitingApproval (remediator/runs/awaiting.py) has its own route,
    grouped by run: two runs waiting in one service are two decisions, not one message."""
    (route,) = (
        r
        for r in load(ALERTMANAGER)["route"]["routes"]
        if r.get("matchers") == ['alertname="VigilRemediationAwaitingApproval"']
    )
    assert route["receiver"] == "team-slack" and "continue" not in route
    assert route["group_by"] == ["alertname", "run_id"]


def _satisfy(matcher: Matcher) -> list[str]:
    """Values of the matcher's label that it accepts: every literal alternative of a
    regex alternation (each alertname a playbook names), else a plausible value."""
    if matcher.op == "=":
        return [matcher.value]
    if matcher.op == "=~" and re.fullmatch(r"[\w-]+(\|[\w-]+)*", matcher.value):
        return matcher.value.split("|")
    candidates = ["shop", "http_request_errors_total", "warning", "checkout"]
    return [next(c for c in candidates if matcher.matches({matcher.name: c}))]


def _representatives(path: Path) -> list[dict[str, str]]:
    labels, matchers = playbook_match(path)
    sets = [{"severity": "warning", "namespace": "shop", **labels}]
    for m in matchers:
        sets = [{**s, m.name: v} for s in sets for v in _satisfy(m)]
    for s in sets:  # representative: the playbook really takes it
        assert all(s.get(k) == v for k, v in labels.items()), (path.name, s)
        assert all(m.matches(s) for m in matchers), (path.name, s)
    return sets


@pytest.mark.parametrize(
    "path", PLAYBOOKS + LOCAL_PLAYBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_what_each_playbook_reacts_to_reaches_the_remediator(path: Path) -> None:
    for labels in _representatives(path):
        assert REMEDIATOR in routes(labels), (path.name, labels)


def test_the_remediator_route_names_exactly_the_playbooks_alerts() -> None:
    route = next(r for r in load(ALERTMANAGER)["route"]["routes"] if r["receiver"] == REMEDIATOR)
    assert route["continue"] is True
    (matcher,) = (parse_matcher(m) for m in route["matchers"])
    assert matcher.name == "alertname" and matcher.op == "=~"
    assert set(matcher.value.split("|")) == playbook_alertnames()


def test_remediator_receiver_settings() -> None:
    receiver = next(r for r in load(ALERTMANAGER)["receivers"] if r["name"] == REMEDIATOR)
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://vigil-remediator:9421/webhook"
    assert hook["max_alerts"] == 100 and hook["send_resolved"] is False
    assert hook["http_config"]["authorization"]["credentials_file"].endswith(
        "/vigil-remediator-token"
    )
