"""``make demo``: the whole chain on one machine, narrated.

Starts on 127.0.0.1 (state and logs in ``.demo/``): node_exporter, the demo shop, Vigil's
detector and remediator, Alertmanager and Prometheus (scraping all of them, remote-writing
to the detector, alerting to Alertmanager). The shop's history is backfilled into
Prometheus with ``promtool tsdb create-blocks-from openmetrics`` so the detector starts
warm. Then the scenario: a latency fault is injected into the shop, Vigil detects it,
Alertmanager routes the enriched alert to the remediator, the playbook restarts the shop
through its admin endpoint, the verification passes and the alert resolves. A timeline
with timings and the URLs to look at are printed; the stack keeps running until Ctrl-C
(``DEMO_EXIT=1``: exit after the scenario, 0 only if every step happened). ``make stop``
(``python -m deploy.local.demo stop``) stops what a previous run left. ``DEMO_WORKDIR``
moves ``.demo/``; ``summary.json`` there records the timeline.

Ports (``DEMO_PORT_BASE`` moves them all; ``DEMO_PORTS`` lists all seven): Prometheus 9090,
Alertmanager 9093, detector 9420, remediator 9421, node_exporter 9100, shop 8080,
blackbox_exporter 9115 (probing the shop's health endpoint).
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.config import dashboards, render
from deploy.local import shop

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STEP_TIMEOUT_S = 90.0


@dataclass
class Ports:
    prometheus: int = 9090
    alertmanager: int = 9093
    detector: int = 9420
    remediator: int = 9421
    node: int = 9100
    shop: int = 8080
    blackbox: int = 9115

    @classmethod
    def from_env(cls) -> Ports:
        listed = os.environ.get("DEMO_PORTS")  # seven ports, in the order of the fields
        if listed:
            return cls(*(int(x) for x in listed.split(",")))
        base = os.environ.get("DEMO_PORT_BASE")
        if not base:
            return cls()
        b = int(base)
        return cls(b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6)


@dataclass
class Timeline:
    start: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, step: str, detail: str = "") -> None:
        at = time.monotonic() - self.start
        self.steps.append({"step": step, "at_s": round(at, 1), "detail": detail})
        print(f"  [{at:6.1f} s] {step}" + (f": {detail}" if detail else ""), flush=True)


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def _post(url: str, doc: Any) -> Any:
    req = urllib.request.Request(
        url,
        data=json.dumps(doc).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _wait(what: str, check: Any, timeout_s: float = STEP_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = check()
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            got = None
        if got:
            return got
        time.sleep(0.5)  # polling a process we started
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(
            f"{name} is missing: run `make demo` (it installs the Debian "
            f"packages) or apt-get install it"
        )
    return path


class Stack:
    """The processes of the demo, their configs in ``work``, their logs and pids."""

    def __init__(self, work: Path, ports: Ports) -> None:
        self.work = work
        self.ports = ports
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], ready: str | None, timeout_s: float = 120.0
    ) -> None:
        log = (self.work / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
            env=env,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        with (self.work / "pids").open("a") as fh:
            fh.write(f"{proc.pid} {name}\n")
        if ready is not None:

            def up() -> bool:
                if proc.poll() is not None:
                    tail = (self.work / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"{name} exited with {proc.returncode}:\n{tail}")
                return _ok(ready)

            _wait(f"{name} ready at {ready}", up, timeout_s)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        (self.work / "pids").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_previous(work: Path) -> None:
    """Stop what a previous ``make demo`` left running (``make stop``): SIGTERM, then
    SIGKILL after 20 s; returns once they are gone."""
    pids_file = work / "pids"
    if not pids_file.exists():
        return
    pids = [int(line.split()[0]) for line in pids_file.read_text().splitlines() if line]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)  # waiting for processes to exit
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    pids_file.unlink()


def backfill(work: Path, ports: Ports, now_s: int) -> Path:
    """Six hours of the shop's gauges, ending two hours ago (the head block's range is
    left to Prometheus), as TSDB blocks."""
    rng = random.Random(11)
    labels = f'instance="127.0.0.1:{ports.shop}",job="demo-shop"'
    times = range(now_s - 8 * 3600, now_s - 2 * 3600, 15)
    readings = [(t, shop.normal_gauges(rng)) for t in times]
    lines = []
    for name in readings[0][1]:
        lines += [f"# HELP {name} backfilled history", f"# TYPE {name} gauge"]
        lines += [f"{name}{{{labels}}} {values[name]:.6g} {t}" for t, values in readings]
    lines.append("# EOF")
    source = work / "history.om"
    source.write_text("\n".join(lines) + "\n")
    tsdb = work / "prometheus-data"
    subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        check=True,
        capture_output=True,
    )
    return tsdb


def write_configs(work: Path, p: Ports) -> None:
    """The local form of deploy/config/: its rules, routes and remote-write selection,
    rendered with this machine's addresses (deploy/config/render.py); only the demo's own
    pieces (scrape intervals, the detector's and remediator's settings) are written here."""
    secrets = work / "secrets"
    secrets.mkdir()
    token = secrets_token()
    values = {
        "slack-url": "http://127.0.0.1:9/slack-not-configured-in-the-demo",
        "smtp-password": "not-configured-in-the-demo",
        "pagerduty-routing-key": "not-configured-in-the-demo",
        "vigil-remediator-token": token,
    }
    for name in render.SECRET_FILES:
        (secrets / name).write_text(values.get(name, "not-configured-in-the-demo") + "\n")
    blackbox = {
        "job_name": "blackbox",
        "metrics_path": "/probe",
        "params": {"module": ["http_2xx"]},
        "static_configs": [{"targets": [f"http://127.0.0.1:{p.shop}/healthz"]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{p.blackbox}"},
        ],
    }
    # the rules with runbook_url pointing at the detector, which serves docs/runbooks/
    rules = work / "rules"
    rules.mkdir()
    rule_files = []
    for source in render.rule_files():
        rule_files.append(rules / source.name)
        rule_files[-1].write_text(
            render.render_rules(source, runbook_base=f"http://127.0.0.1:{p.detector}/runbooks")
        )
    prometheus = render.render_prometheus(
        scrape_targets={
            "demo-shop": [f"127.0.0.1:{p.shop}"],
            "node": [f"127.0.0.1:{p.node}"],
            "vigil-detector": [f"127.0.0.1:{p.detector}"],
            "vigil-remediator": [f"127.0.0.1:{p.remediator}"],
            "prometheus": [f"127.0.0.1:{p.prometheus}"],
            "alertmanager": [f"127.0.0.1:{p.alertmanager}"],
        },
        alertmanagers=[f"127.0.0.1:{p.alertmanager}"],
        remote_write_urls=[f"http://127.0.0.1:{p.detector}/api/v1/write"],
        extra_scrape_configs=[blackbox],
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_files=rule_files,
    )
    (work / "prometheus.yml").write_text(prometheus)
    (work / "alertmanager.yml").write_text(
        render.render_alertmanager(
            remediator_url=f"http://127.0.0.1:{p.remediator}/webhook", secrets_dir=secrets
        )
    )
    (work / "blackbox.yml").write_text("""
modules:
  http_2xx: {prober: http, timeout: 2s, http: {valid_status_codes: [200]}}
""")
    (work / "detector.yaml").write_text(f"""
alerts:
  - name: VigilAnomaly
    match: '{{job="demo-shop", __name__=~"demo_(latency_p99_seconds|error_ratio)"}}'
    for_s: 3      # the demo scrapes every second: 3 s anomalous before it fires,
    resolve_s: 5  # 5 s back to normal before it resolves (defaults: 60 s and 120 s)
alerting: {{resend_s: 10, stale_min_s: 30}}
writeback:
  url: http://127.0.0.1:{p.prometheus}/api/v1/write
  match: '{{job="demo-shop"}}'
  interval_s: 2
""")
    (work / "remediator.yaml").write_text(f"""
http:
  allowed_urls: ['http://127.0.0.1:{p.shop}/']
auth:
  bearer_token_file: {secrets / "vigil-remediator-token"}
""")


def secrets_token() -> str:
    return "".join(random.SystemRandom().choices("abcdefghijklmnopqrstuvwxyz0123456789", k=32))


def _playbooks(work: Path, p: Ports) -> Path:
    """The demo's playbooks with this run's shop port: a playbook names the host it calls
    (the default 127.0.0.1:8080), never a label."""
    out = work / "playbooks"
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted((HERE / "playbooks").glob("*.yaml")):
        (out / src.name).write_text(
            src.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{p.shop}")
        )
    return out


def start_stack(stack: Stack) -> None:
    p, w = stack.ports, stack.work
    py = sys.executable
    stack.start(
        "node_exporter",
        [
            _binary("prometheus-node-exporter"),
            f"--web.listen-address=127.0.0.1:{p.node}",
            "--no-collector.systemd",
        ],
        f"http://127.0.0.1:{p.node}/metrics",
    )
    stack.start(
        "blackbox_exporter",
        [
            _binary("prometheus-blackbox-exporter"),
            f"--config.file={w / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{p.blackbox}",
        ],
        f"http://127.0.0.1:{p.blackbox}/metrics",
    )
    stack.start(
        "shop",
        [py, "-m", "deploy.local.shop", "--listen", f"127.0.0.1:{p.shop}"],
        f"http://127.0.0.1:{p.shop}/healthz",
    )
    stack.start(
        "prometheus",
        [
            _binary("prometheus"),
            f"--config.file={w / 'prometheus.yml'}",
            f"--storage.tsdb.path={w / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{p.prometheus}",
            "--web.enable-remote-write-receiver",
        ],
        f"http://127.0.0.1:{p.prometheus}/-/ready",
    )
    stack.start(
        "alertmanager",
        [
            _binary("prometheus-alertmanager"),
            f"--config.file={w / 'alertmanager.yml'}",
            f"--storage.path={w / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{p.alertmanager}",
            f"--web.external-url=http://127.0.0.1:{p.alertmanager}/",
            "--cluster.listen-address=",
        ],
        f"http://127.0.0.1:{p.alertmanager}/-/ready",
    )
    stack.start(
        "remediator",
        [
            py,
            "-m",
            "remediator",
            "serve",
            "--listen",
            f"127.0.0.1:{p.remediator}",
            "--config",
            str(w / "remediator.yaml"),
            "--playbooks",
            str(_playbooks(w, p)),
            "--alertmanager",
            f"http://127.0.0.1:{p.alertmanager}",
            "--prometheus",
            f"http://127.0.0.1:{p.prometheus}",
            "--state-dir",
            str(w / "remediator"),
            "--detector-url",
            f"http://127.0.0.1:{p.detector}",
        ],
        f"http://127.0.0.1:{p.remediator}/readyz",
    )
    stack.start(
        "detector",
        [
            py,
            "-m",
            "detector",
            "serve",
            "--listen",
            f"127.0.0.1:{p.detector}",
            "--config",
            str(w / "detector.yaml"),
            "--state-dir",
            str(w / "detector"),
            "--runbooks",
            str(ROOT / "docs" / "runbooks"),
            "--remediator-url",
            f"http://127.0.0.1:{p.remediator}",
            "--prometheus",
            f"http://127.0.0.1:{p.prometheus}",
            "--alertmanager",
            f"http://127.0.0.1:{p.alertmanager}",
        ],
        f"http://127.0.0.1:{p.detector}/readyz",
        timeout_s=300,
    )


def _am_alert(p: Ports, *, active: bool) -> dict[str, Any] | None:
    for a in _get(
        f"http://127.0.0.1:{p.alertmanager}/api/v2/alerts?active={str(active).lower()}"
        "&silenced=true&inhibited=true"
    ):
        if a["labels"].get("metric_name") == "demo_latency_p99_seconds":
            return dict(a)
    return None


def _runs(p: Ports) -> list[dict[str, Any]]:
    return list(_get(f"http://127.0.0.1:{p.remediator}/api/v1/runs")["data"])


def scenario(stack: Stack, tl: Timeline) -> dict[str, Any]:
    p = stack.ports
    shop = f"http://127.0.0.1:{p.shop}"

    def warm() -> bool:
        q = urllib.parse.urlencode({"match[]": "demo_latency_p99_seconds"})
        data = _get(f"http://127.0.0.1:{p.detector}/api/v1/series?{q}")["data"]
        return bool(data) and data[0]["samples"] >= 20 and data[0]["score"] is not None

    _wait("the detector to see the shop's latency", warm)
    tl.mark("detector watching", "demo_latency_p99_seconds warmed from 6 h of history")
    _post(f"{shop}/admin/fault", {"latency_s": 2.0})
    tl.mark("fault injected", "the shop's checkouts now take ~2 s more")
    alert = _wait("Vigil's alert in Alertmanager", lambda: _am_alert(p, active=True))
    tl.mark("anomaly detected and routed", alert["annotations"].get("summary", ""))
    done = ("succeeded", "undone", "failed", "escalated", "refused")
    run = _wait(
        "the remediator's run",
        lambda: [
            r for r in _runs(p) if r["fingerprint"] == alert["fingerprint"] and r["state"] in done
        ],
    )[0]
    detail = _get(f"http://127.0.0.1:{p.remediator}/api/v1/runs/{run['id']}")
    acted = [e for e in detail["events"] if e["kind"] == "action_response"]
    if acted:
        tl.mark(
            "playbook acted",
            f"{run['playbook']}: POST {shop}/admin/restart ({acted[0]['verdict']})",
        )
    verified = [e for e in detail["events"] if e["kind"] == "verify" and e["verdict"] == "ok"]
    if run["state"] != "succeeded":
        tl.mark("run ended badly", f"{run['state']}: {run['outcome']}")
        return {"ok": False, "run": detail, "alert": alert}
    if verified:
        tl.mark("verification passed", verified[0]["name"])

    def resolved() -> bool:
        return _am_alert(p, active=True) is None

    _wait("the alert to resolve", resolved)
    tl.mark("alert resolved", "the shop's latency is back inside its band")
    return {"ok": True, "run": detail, "alert": alert}


def check_dashboards(p: Ports) -> dict[str, Any]:
    """Every PromQL query of every dashboard, asked of this stack's Prometheus: which
    return data, which read what only a cluster has, which return nothing."""
    values = {
        "metric": "demo_latency_p99_seconds",
        "selector": 'job="demo-shop"',
        "service": ".+",
        "instance": ".+",
        "job": ".+",
    }
    report: dict[str, Any] = {"with_data": 0, "cluster_only": 0, "empty": []}
    for name, build in dashboards.DASHBOARDS.items():
        for q in dashboards.prometheus_queries(build(), values):
            if q.cluster_source() is not None:
                report["cluster_only"] += 1
                continue
            url = f"http://127.0.0.1:{p.prometheus}/api/v1/query?" + urllib.parse.urlencode(
                {"query": q.expr}
            )
            if _get(url)["data"]["result"]:
                report["with_data"] += 1
            else:
                report["empty"].append(f"{name}: {q.panel} [{q.ref}]: {q.expr}")
    return report


def check_alert_link(p: Ports, alert: dict[str, Any]) -> dict[str, Any]:
    """The alert's dashboard_url (a Prometheus graph here; Grafana's vigil-anomaly in a
    cluster): does each series it draws return data over the range it shows?"""
    parts = urllib.parse.urlsplit(alert["annotations"]["dashboard_url"])
    query = urllib.parse.parse_qs(parts.query)
    out: dict[str, Any] = {"url": alert["annotations"]["dashboard_url"], "series": {}}
    i = 0
    while f"g{i}.expr" in query:
        end = calendar.timegm(time.strptime(query[f"g{i}.end_input"][0], "%Y-%m-%d %H:%M:%S"))
        minutes = int(query[f"g{i}.range_input"][0].removesuffix("m"))
        url = f"http://127.0.0.1:{p.prometheus}/api/v1/query_range?" + urllib.parse.urlencode(
            {
                "query": query[f"g{i}.expr"][0],
                "start": end - 60 * minutes,
                "end": min(end, time.time()),
                "step": "5",
            }
        )
        result = _get(url)["data"]["result"]
        out["series"][query[f"g{i}.expr"][0]] = sum(len(r["values"]) for r in result)
        i += 1
    return out


def _simulate_cluster(alert: dict[str, Any]) -> str:
    """What the equivalent cluster playbook would do, via `vigil-remediator simulate`."""
    doc = {
        "status": "firing",
        "labels": {
            **alert["labels"],
            "namespace": "shop",
            "metric_name": "http_request_latency_seconds",
        },
        "annotations": alert.get("annotations", {}),
        "startsAt": alert["startsAt"],
        "fingerprint": alert["fingerprint"],
    }
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "vigil-demo-alert.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediator",
            "simulate",
            "--alert",
            str(path),
            "--playbooks",
            str(ROOT / "playbooks"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        report = json.loads(out.stdout)
    except ValueError:
        return "(simulate failed: " + out.stderr.strip()[-200:] + ")"
    lines = [
        f"    {m['playbook']} ({m['mode']}): "
        + ", ".join(m.get("steps", []))
        + (
            ""
            if "plan" in m
            else " (its target is resolved in the cluster: pod -> ReplicaSet -> Deployment)"
        )
        for m in report.get("matches", [])
    ]
    return "\n".join(lines) or "    (no cluster playbook matches)"


def main() -> int:
    work = Path(os.environ.get("DEMO_WORKDIR") or ROOT / ".demo")
    if sys.argv[1:] == ["stop"]:
        stop_previous(work)
        print("stopped")
        return 0
    stop_previous(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(exist_ok=True)
    ports = Ports.from_env()
    stack = Stack(work, ports)
    try:
        return _run(work, ports, stack)
    finally:
        stack.stop()


def _run(work: Path, ports: Ports, stack: Stack) -> int:
    tl = Timeline()
    print("Vigil demo: starting the stack on 127.0.0.1 (logs in .demo/)", flush=True)
    result: dict[str, Any] = {"ok": False}
    try:
        backfill(work, ports, int(time.time()))
        tl.mark("history backfilled", "6 h of the shop's gauges, with promtool")
        write_configs(work, ports)
        start_stack(stack)
        tl.mark(
            "stack ready",
            "node_exporter, blackbox_exporter, shop, Prometheus, "
            "Alertmanager, remediator, detector",
        )
        result = scenario(stack, tl)
        if result.get("ok"):
            report = check_dashboards(ports)
            report["alert_link"] = check_alert_link(ports, result["alert"])
            result["dashboards"] = report
            tl.mark(
                "dashboards checked",
                f"{report['with_data']} panel queries return data "
                f"here, {report['cluster_only']} read what only a cluster has "
                f"(kube-state-metrics, cAdvisor, CoreDNS, Tempo), {len(report['empty'])} empty",
            )
    except (TimeoutError, subprocess.CalledProcessError) as exc:
        tl.mark("scenario stopped", str(exc))
    finally:
        summary = {
            "ok": bool(result.get("ok")),
            "timeline": tl.steps,
            "run_id": result.get("run", {}).get("id"),
            "alert": result.get("alert"),
            "ports": ports.__dict__,
            "dashboards": result.get("dashboards"),
        }
        (work / "summary.json").write_text(json.dumps(summary, indent=2))
    p = ports
    if result.get("alert"):
        print("\nThe same alert in a cluster (vigil-remediator simulate, playbooks/):")
        print(_simulate_cluster(result["alert"]))
    print(
        f"""
Where to look:
  The console (anomalies, charts):  http://127.0.0.1:{p.detector}/
  The console (runs, playbooks):    http://127.0.0.1:{p.remediator}/
  Prometheus, the shop's latency:  http://127.0.0.1:{p.prometheus}/graph?g0.expr=demo_latency_p99_seconds&g0.range_input=15m
  Alertmanager:                     http://127.0.0.1:{p.alertmanager}/#/alerts
  Vigil, anomalies now:             http://127.0.0.1:{p.detector}/api/v1/anomalies
  Vigil, the series it watches:     http://127.0.0.1:{p.detector}/api/v1/series
  Remediation runs (audit):         http://127.0.0.1:{p.remediator}/api/v1/runs
  The shop (faults: POST /admin/fault {{"latency_s": 2}}): http://127.0.0.1:{p.shop}/admin/state
Result: {"every step happened" if result.get("ok") else "NOT every step happened"}""",
        flush=True,
    )
    if os.environ.get("DEMO_EXIT") == "1":
        return 0 if result.get("ok") else 1
    print("Running until Ctrl-C (or `make stop` from another terminal).", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
