"""The operator documentation keeps up with what we ship.

- every alert defined in deploy/config/rules/*.yaml (whatever files exist there when the
  test runs, generated SLO rules included) has docs/runbooks/<AlertName>.md, and its
  `runbook` / `runbook_url` annotation points at it;
- the alerts Vigil posts itself (VigilAnomaly, VigilRemediationFailed and every
  alertname a shipped playbook escalates with) have runbooks too;
- every runbook has the five fixed sections, and names the playbooks that react to its
  alert; its silencing advice never silences a whole alertname;
- docs/runbooks/VigilAnomaly.md is the detector's served runbook, byte for byte;
- docs/playbooks.md mentions every shipped playbook and every registered action, its
  complete examples are valid and identical to the files in playbooks/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from tests.conftest import ROOT

RULES = ROOT / "deploy" / "config" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks"
PLAYBOOKS = ROOT / "playbooks"
DOCS = ROOT / "docs"

SECTIONS = (
    "## What it means",
    "## How to confirm",
    "## What Vigil does",
    "## What to do",
    "## How to silence safely",
)
# posted by the detector and the remediator themselves, not by Prometheus rules
VIGIL_POSTED = ("VigilAnomaly", "VigilRemediationFailed")
# the detector serves this one at /runbooks/VigilAnomaly (detector/web/runbooks/); it keeps
# its own layout, and docs/runbooks/ carries an identical copy
SERVED = ROOT / "detector" / "web" / "runbooks" / "VigilAnomaly.md"


def _rule_docs() -> list[tuple[Path, dict]]:
    """Every alerting rule in the rule files: Prometheus `groups:` files, or a
    PrometheusRule-shaped document (`spec.groups`)."""
    out = []
    for path in sorted(RULES.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict):
                continue
            groups = doc.get("groups") or (doc.get("spec") or {}).get("groups") or []
            for group in groups:
                for rule in group.get("rules") or []:
                    if isinstance(rule, dict) and "alert" in rule:
                        out.append((path, rule))
    return out


RULE_ALERTS = _rule_docs()
ALERTNAMES = sorted({rule["alert"] for _, rule in RULE_ALERTS})


def _escalation_alertnames() -> list[str]:
    """The alertnames the shipped playbooks post with alertmanager.escalate."""
    spec = build_registry().get("alertmanager.escalate")
    assert spec is not None
    default = spec.params.model_fields["alertname"].default
    names = set()
    for path in sorted(PLAYBOOKS.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = doc["spec"]
        steps = list(spec["steps"]) + (spec["undo"] if isinstance(spec.get("undo"), list) else [])
        for step in steps:
            if step["action"] == "alertmanager.escalate":
                names.add((step.get("params") or {}).get("alertname", default))
    return sorted(names)


ALL_RUNBOOK_ALERTS = sorted({*ALERTNAMES, *VIGIL_POSTED, *_escalation_alertnames()})


def _sections(text: str) -> dict[str, str]:
    """'## Heading' -> the text under it (up to the next '## ')."""
    parts = re.split(r"^(## .+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _playbooks_reacting_to(alertname: str) -> list[str]:
    """Shipped playbooks whose alertname matchers accept this alertname (other label
    matchers, like rollback-bad-rollout's metric_name, depend on the alert instance)."""
    catalog = load_catalog([PLAYBOOKS], build_registry())
    assert catalog.ok, catalog.problems
    out = []
    for entry in catalog.entries:
        on_name = [m for m in entry.matchers if m.name == "alertname"]
        if on_name and all(m.matches({"alertname": alertname}) for m in on_name):
            out.append(entry.playbook.name)
    return out


def test_the_rule_files_define_alerts():
    assert len(ALERTNAMES) >= 20, ALERTNAMES


@pytest.mark.parametrize("alertname", ALL_RUNBOOK_ALERTS)
def test_every_alert_has_a_runbook(alertname):
    assert (RUNBOOKS / f"{alertname}.md").is_file(), (
        f"docs/runbooks/{alertname}.md is missing (write it: see docs/runbooks/ for the form)"
    )


def test_every_rule_points_at_its_runbook():
    problems = []
    for path, rule in RULE_ALERTS:
        name = rule["alert"]
        annotations = rule.get("annotations") or {}
        links = [annotations[k] for k in ("runbook", "runbook_url") if k in annotations]
        if not links:
            problems.append(f"{path.name}: {name} has no runbook annotation")
        for link in links:
            if re.match(r"^https?://", link):
                if not re.search(rf"/{re.escape(name)}(\.md)?$", link):
                    problems.append(f"{path.name}: {name}: {link} does not name its runbook")
            elif link != f"docs/runbooks/{name}.md":
                problems.append(
                    f"{path.name}: {name}: runbook {link!r} is not docs/runbooks/{name}.md"
                )
            elif not (ROOT / link).is_file():
                problems.append(f"{path.name}: {name}: {link} does not exist")
    assert not problems, "\n".join(problems)


async def test_the_detector_serves_the_runbook_every_rendered_rule_links_to(aiohttp_client):
    from deploy.config import render
    from detector.app import build_app
    from detector.config import DetectorConfig

    client = await aiohttp_client(
        build_app(DetectorConfig(), runbooks_dir=RUNBOOKS, external_url="http://vigil.example:9420")
    )
    base = "http://vigil.example:9420/runbooks"
    seen = 0
    for path in render.rule_files():
        doc = yaml.safe_load(render.render_rules(path, runbook_base=base))
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                url = rule["annotations"]["runbook_url"]
                assert url == f"{base}/{rule['alert']}"
                served = await client.get(url.removeprefix("http://vigil.example:9420"))
                assert served.status == 200, url
                assert await served.text() == (RUNBOOKS / f"{rule['alert']}.md").read_text(
                    encoding="utf-8"
                )
                seen += 1
    assert seen >= 20
    assert (await client.get("/runbooks/NoSuchAlert")).status == 404
    assert (await client.get("/runbooks/..%2F..%2Fpyproject")).status == 404


def test_vigil_anomaly_runbook_is_the_one_the_detector_serves():
    assert (RUNBOOKS / "VigilAnomaly.md").read_bytes() == SERVED.read_bytes()


def test_no_runbook_for_an_alert_we_do_not_ship():
    stray = sorted(
        p.stem
        for p in RUNBOOKS.glob("*.md")
        if p.stem not in ALL_RUNBOOK_ALERTS and p.name != "README.md"
    )
    assert not stray, f"runbooks for alerts nothing defines or posts: {stray}"


def _runbook(alertname: str) -> Path:
    path = RUNBOOKS / f"{alertname}.md"
    assert path.is_file(), f"{path} is missing: write the runbook of {alertname}"
    return path


@pytest.mark.parametrize("alertname", [a for a in ALL_RUNBOOK_ALERTS if a != "VigilAnomaly"])
def test_runbook_has_the_five_sections(alertname):
    path = _runbook(alertname)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {alertname}"), f"{path.name}: the title names the alert"
    headings = [line.strip() for line in text.splitlines() if line.startswith("## ")]
    assert tuple(h for h in headings if h in SECTIONS) == SECTIONS, (
        f"{path.name}: sections {headings}, expected {list(SECTIONS)} in this order"
    )
    for heading, body in _sections(text).items():
        if heading in SECTIONS:
            assert body.strip(), f"{path.name}: {heading} is empty"


@pytest.mark.parametrize("alertname", [a for a in ALERTNAMES if a != "VigilAnomaly"])
def test_runbook_names_the_playbooks_that_react(alertname):
    path = _runbook(alertname)
    does = _sections(path.read_text(encoding="utf-8")).get("## What Vigil does", "")
    for playbook in _playbooks_reacting_to(alertname):
        assert playbook in does, f"{path.name}: 'What Vigil does' must name {playbook}"


def _commands(text: str) -> list[str]:
    """Shell commands in the text, with backslash continuations joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


@pytest.mark.parametrize("alertname", [a for a in ALL_RUNBOOK_ALERTS if a != "VigilAnomaly"])
def test_silencing_advice_is_narrow(alertname):
    path = _runbook(alertname)
    section = _sections(path.read_text(encoding="utf-8")).get("## How to silence safely", "")
    commands = [c for c in _commands(section) if "amtool silence add" in c]
    assert commands, f"{path.name}: show the amtool silence add command"
    for command in commands:
        args = command.split("amtool silence add", 1)[1]
        args = re.sub(r"""--[a-z.-]+(=|\s+)('[^']*'|"[^"]*"|\S+)""", " ", args)
        names = {
            name for name, _ in re.findall(r"""['"]?([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)""", args)
        }
        assert "alertname" in names and len(names) >= 2, (
            f"{path.name}: {command.strip()!r} must match the alertname and more"
        )
        assert "--comment" in command, f"{path.name}: a silence needs a --comment"
        assert "--duration" in command or "--expires" in command, (
            f"{path.name}: a silence needs an expiry"
        )


def test_playbooks_doc_mentions_every_playbook_and_action():
    text = (DOCS / "playbooks.md").read_text(encoding="utf-8")
    missing = [p.stem for p in sorted(PLAYBOOKS.glob("*.yaml")) if p.stem not in text]
    assert not missing, f"docs/playbooks.md does not mention the playbooks {missing}"
    actions = [n for n in build_registry().names() if f"`{n}`" not in text]
    assert not actions, f"docs/playbooks.md does not document the actions {actions}"


def test_playbooks_doc_describes_every_schema_field():
    from remediator.catalog import playbook as schema

    text = (DOCS / "playbooks.md").read_text(encoding="utf-8")
    models = (
        schema.Metadata,
        schema.Match,
        schema.Spec,
        schema.Guards,
        schema.Step,
        schema.Verify,
        schema.Escalate,
        schema.RateLimit,
        schema.BlastRadius,
        schema.Precondition,
        schema.FreezeWindow,
        schema.CircuitBreaker,
        schema.AllowDeny,
    )
    missing = sorted(
        {
            f"{m.__name__}.{f}"
            for m in models
            for f in m.model_fields
            if not re.search(rf"`[^`\n]*\b{f}\b", text)
        }
    )
    assert not missing, f"docs/playbooks.md does not describe {missing}"


def test_playbooks_doc_examples_are_the_shipped_playbooks(tmp_path):
    text = (DOCS / "playbooks.md").read_text(encoding="utf-8")
    blocks = [
        b
        for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
        if b.startswith("apiVersion: vigil/v1")
    ]
    assert len(blocks) >= 2, "docs/playbooks.md shows two complete playbooks"
    for block in blocks:
        name = yaml.safe_load(block)["metadata"]["name"]
        shipped = PLAYBOOKS / f"{name}.yaml"
        assert shipped.is_file(), f"the example {name} is not a shipped playbook"
        assert block == shipped.read_text(encoding="utf-8"), (
            f"the example {name} differs from playbooks/{name}.yaml: copy it again"
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(block)
        catalog = load_catalog([path], build_registry())
        assert catalog.ok, catalog.problems


@pytest.mark.parametrize(
    "name", ["instrumentation", "architecture", "playbooks", "troubleshooting"]
)
def test_operator_docs_exist(name):
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    assert text.startswith("# ") and len(text) > 2000


def test_docs_refer_only_to_files_that_exist():
    """Paths like `deploy/cluster/...` or `docs/...` written in the docs exist."""
    problems = []
    pattern = re.compile(
        r"`((?:deploy|docs|playbooks|remediator|detector|tests)/"
        r"[A-Za-z0-9_./<>*-]+)`"
    )
    for path in [
        *(
            DOCS / n
            for n in ("instrumentation.md", "architecture.md", "playbooks.md", "troubleshooting.md")
        ),
        *sorted(RUNBOOKS.glob("*.md")),
    ]:
        for ref in pattern.findall(path.read_text(encoding="utf-8")):
            if any(c in ref for c in "<>*"):
                continue
            if not (ROOT / ref.rstrip("/.")).exists():
                problems.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not problems, "\n".join(problems)


def test_instrumentation_example_serves_its_metrics():
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    text = (DOCS / "instrumentation.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    scope: dict = {}
    exec(compile(code, "docs/instrumentation.md", "exec"), scope)
    registry = CollectorRegistry()
    app = scope["build_app"](scope["ShopMetrics"](registry), registry)

    async def run() -> str:
        async with TestClient(TestServer(app)) as client:
            order = {
                "payment_method": "card",
                "currency": "EUR",
                "total_cents": 1299,
                "items": ["a", "b"],
            }
            assert (await client.post("/checkout", json=order)).status == 200
            return await (await client.get("/metrics")).text()

    body = asyncio.run(run())
    for line in (
        'shop_orders_total{outcome="ok",payment_method="card"} 1.0',
        'shop_revenue_cents_total{currency="EUR"} 1299.0',
        'shop_requests_total{code="200",route="/checkout"} 1.0',
        "shop_cart_items_count 1.0",
    ):
        assert line in body, line


def test_detectors_md_documents_every_knob_with_its_default(tmp_path):
    import math

    from detector.config import EnsembleParams, RobustParams, SpotParams, load_config

    text = (DOCS / "detectors.md").read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `((?:ensemble|robust|spot)\.\w+)` \| ([^|]*) \|", text, re.M)
    }
    for kind, model in (
        ("ensemble", EnsembleParams),
        ("robust", RobustParams),
        ("spot", SpotParams),
    ):
        for name, field in model.model_fields.items():
            if name == "kind":
                continue
            key = f"{kind}.{name}"
            assert key in rows, f"docs/detectors.md: the knob table lacks `{key}`"
            default = field.default
            shown = rows[key].strip()
            assert shown == "inf" if default == math.inf else float(shown) == default, (
                f"docs/detectors.md: `{key}` says {shown}, the default is {default}"
            )
    example = re.search(r"## Choosing a detector.*?```yaml\n(.*?)```", text, re.S)
    assert example is not None
    path = tmp_path / "detector.yaml"
    path.write_text(example.group(1))
    assert [r.detector.kind for r in load_config(path).series] == ["ensemble", "robust", "ensemble"]


def test_observability_md_lists_every_metric_vigil_exports(tmp_path):
    from prometheus_client import CollectorRegistry

    from detector.metrics import build_alert_metrics, build_checkpoint_metrics, build_metrics
    from remediator.metrics import build_metrics as build_remediator_metrics

    detector, remediator = CollectorRegistry(), CollectorRegistry()
    build_metrics(detector)
    build_alert_metrics(detector)
    build_checkpoint_metrics(detector)
    build_remediator_metrics(remediator)
    names = {
        m.name
        for reg in (detector, remediator)
        for m in reg.collect()
        if m.name.startswith("vigil_")
    }
    assert len(names) > 60
    text = (DOCS / "observability.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"vigil_[a-z_]+", text))
    # a counter's family name drops _total; the doc may name either form
    missing = sorted(n for n in names if n not in documented and f"{n}_total" not in documented)
    assert not missing, f"docs/observability.md does not list {missing}"
