"""Playbook catalog: the fixtures under tests/fixtures/playbooks, the loader's exact error
text, plan-time template checks, and the ``check``, ``schema`` and ``simulate`` commands.

Path convention of the ``.expected`` files: every problem line starts with the file's path
*relative to the repository root* (``tests/fixtures/playbooks/invalid/<name>.yaml``),
because the tests run the loader from the repository root with relative paths, as CI's
``vigil-remediator check tests/fixtures/playbooks/...`` does. Each ``.expected`` file holds
every problem line of its ``.yaml``, in the loader's order, each ending with a newline.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remediator.__main__ import main
from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from remediator.catalog.playbook import Playbook
from remediator.config import RemediatorConfig
from remediator.errors import TemplateError
from remediator.runs.plan import PlannedStep, build_plan
from remediator.simulate import simulate
from remediator.webhook import Alert, alert_from_json
from tests.conftest import ROOT, SAMPLES

REL = Path("tests/fixtures/playbooks")
VALID = REL / "valid"
INVALID = REL / "invalid"
INVALID_NAMES = sorted(p.stem for p in (ROOT / INVALID).glob("*.yaml"))
VALID_NAMES = sorted(p.stem for p in (ROOT / VALID).glob("*.yaml"))
REGISTRY = build_registry()


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root, so problem lines carry repository-relative paths."""
    monkeypatch.chdir(ROOT)
    return ROOT


def expected(name: str) -> str:
    return (ROOT / INVALID / f"{name}.expected").read_text(encoding="utf-8")


def alert(**labels: str) -> Alert:
    return alert_from_json(
        {
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": "stuck for 1h"},
            "startsAt": "2026-11-27T10:00:00Z",
            "fingerprint": "abc123",
            "generatorURL": "http://prom/graph",
        }
    )


# --- fixtures on disk ---------------------------------------------------------------------
def test_the_fixture_sets_are_what_the_tests_expect() -> None:
    assert VALID_NAMES == ["notify-anomaly", "restart-worker-approval", "silence-research-alert"]
    assert len(INVALID_NAMES) >= 10
    for name in INVALID_NAMES:
        assert (ROOT / INVALID / f"{name}.expected").is_file(), name
    assert sorted(p.stem for p in (ROOT / INVALID).glob("*.expected")) == INVALID_NAMES


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_playbook_gives_exactly_its_expected_problems(at_root: Path, name: str) -> None:
    catalog = load_catalog([INVALID / f"{name}.yaml"], REGISTRY)
    assert catalog.entries == ()
    assert not catalog.ok
    assert "".join(f"{p}\n" for p in catalog.problems) == expected(name)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_every_expected_line_names_its_file_and_line(name: str) -> None:
    for line in expected(name).splitlines():
        file, line_no, rest = line.split(":", 2)
        assert file == f"tests/fixtures/playbooks/invalid/{name}.yaml"
        assert line_no.isdigit() and int(line_no) >= 1
        path, sep, message = rest.partition(": ")
        assert sep and path.startswith(" ") and message, line


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_playbook_loads(at_root: Path, name: str) -> None:
    catalog = load_catalog([VALID / f"{name}.yaml"], REGISTRY)
    assert catalog.problems == ()
    [entry] = catalog.entries
    assert entry.playbook.name == name
    assert entry.path == VALID / f"{name}.yaml"
    assert catalog.by_name(name) is entry


def test_the_valid_folder_loads_whole(at_root: Path) -> None:
    catalog = load_catalog([VALID], REGISTRY)
    assert catalog.ok
    assert [e.playbook.name for e in catalog.entries] == VALID_NAMES


def test_the_invalid_folder_reports_every_file_in_order(at_root: Path) -> None:
    catalog = load_catalog([INVALID], REGISTRY)
    assert catalog.entries == ()
    assert "".join(f"{p}\n" for p in catalog.problems) == "".join(
        expected(name) for name in INVALID_NAMES
    )


def test_a_bad_file_does_not_stop_the_good_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed = tmp_path / "playbooks"
    mixed.mkdir()
    for name in VALID_NAMES:
        shutil.copy(ROOT / VALID / f"{name}.yaml", mixed)
    for name in ("yaml-syntax", "unknown-action", "several-problems"):
        shutil.copy(ROOT / INVALID / f"{name}.yaml", mixed)
    (mixed / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (mixed / "notes.txt").write_text("not a playbook")
    monkeypatch.chdir(tmp_path)
    catalog = load_catalog([Path("playbooks")], REGISTRY)
    assert [e.playbook.name for e in catalog.entries] == VALID_NAMES
    bad = sorted({p.split(":", 1)[0] for p in catalog.problems})
    assert bad == [
        "playbooks/latin1.yaml",
        "playbooks/several-problems.yaml",
        "playbooks/unknown-action.yaml",
        "playbooks/yaml-syntax.yaml",
    ]
    assert len(catalog.problems) == 1 + 7 + 1 + 1
    [latin] = [p for p in catalog.problems if p.startswith("playbooks/latin1.yaml")]
    assert latin.startswith("playbooks/latin1.yaml:1: (root): not UTF-8 text: ")
    # the same problems as in the fixtures, only under another path
    assert "".join(
        f"{p}\n" for p in catalog.problems if p.startswith("playbooks/unknown-action.yaml")
    ) == expected("unknown-action").replace(str(INVALID), "playbooks")


def test_a_duplicate_name_is_refused_and_the_first_file_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / VALID / "silence-research-alert.yaml").read_text()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "silence-research-alert.yaml").write_text(text)
    (tmp_path / "a" / "silence-research-alert.yml").write_text(text)
    monkeypatch.chdir(tmp_path)
    catalog = load_catalog([Path("a"), Path("b")], REGISTRY)
    assert [str(e.path) for e in catalog.entries] == ["a/silence-research-alert.yaml"]
    assert catalog.problems == (
        "a/silence-research-alert.yml:6: metadata.name: 'silence-research-alert' is already "
        "defined in a/silence-research-alert.yaml",
        "b/silence-research-alert.yaml:6: metadata.name: 'silence-research-alert' is already "
        "defined in a/silence-research-alert.yaml",
    )


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    catalog = load_catalog([tmp_path / "nope.yaml"], REGISTRY)
    assert catalog.entries == ()
    [problem] = catalog.problems
    assert problem.startswith(f"{tmp_path / 'nope.yaml'}:1: (root): cannot read file: ")


# --- templates: checked for names at load, for types at plan time -------------------------
TEMPLATED = """\
apiVersion: vigil/v1
kind: Playbook
metadata:
  name: templated
spec:
  match:
    labels: {alertname: DiskFlapping}
  steps:
    - name: silence
      action: alertmanager.silence
      params:
        matchers: ['instance="{{ labels.instance }}"']
        duration_s: '{{ labels.silence_s }}'
    - name: pause
      action: wait
      params: {seconds: '{{ annotations.pause_s }}'}
"""


@pytest.fixture
def templated(tmp_path: Path) -> Playbook:
    path = tmp_path / "templated.yaml"
    path.write_text(TEMPLATED)
    catalog = load_catalog([path], REGISTRY)
    assert catalog.problems == ()  # a template's type is not checked at load
    return catalog.entries[0].playbook


def templated_alert(**labels: str) -> Alert:
    return alert_from_json(
        {
            "status": "firing",
            "labels": {"alertname": "DiskFlapping", **labels},
            "annotations": {"pause_s": "30"},
            "startsAt": "2026-11-27T10:00:00Z",
            "fingerprint": "f",
        }
    )


def plan(playbook: Playbook, a: Alert) -> list[PlannedStep]:
    return build_plan(playbook.spec.steps, a, REGISTRY, run_id="r1", run_url="http://v/r1")


def test_templated_params_are_typed_once_rendered(templated: Playbook) -> None:
    steps = plan(templated, templated_alert(instance="db-1:9100", silence_s="600"))
    assert [s.to_json() for s in steps] == [
        {
            "step": "silence",
            "action": "alertmanager.silence",
            "params": {
                "matchers": ['instance="db-1:9100"'],
                "duration_s": 600.0,
                "comment": "silenced by a Vigil playbook",
                "created_by": "vigil-remediator",
            },
            "request": {
                "method": "POST",
                "path": "/api/v2/silences",
                "matchers": [
                    {"name": "instance", "value": "db-1:9100", "isRegex": False, "isEqual": True}
                ],
                "duration_s": 600.0,
                "comment": "silenced by a Vigil playbook",
            },
        },
        {
            "step": "pause",
            "action": "wait",
            "params": {"seconds": 30.0},
            "request": {"wait_s": 30.0},
        },
    ]


@pytest.mark.parametrize(
    "labels,message",
    [
        (
            {"instance": "db-1", "silence_s": "forever"},
            "step silence: params.duration_s: 'forever' is not a duration: expected seconds or "
            "Prometheus syntax with units y w d h m s ms, e.g. 90, 90s, 15m, 1h30m, 7d (rendered "
            "from the alert)",
        ),
        (
            {"instance": "db-1", "silence_s": "-5"},
            "step silence: params.duration_s: Input should be greater than 0 (rendered from the "
            "alert)",
        ),
        (
            {"instance": "db-1"},
            "step silence: {{ labels.silence_s }}: the alert has no label 'silence_s'",
        ),
    ],
)
def test_a_template_that_does_not_fit_the_alert_fails_at_plan_time_naming_the_step(
    templated: Playbook, labels: dict[str, str], message: str
) -> None:
    with pytest.raises(TemplateError) as info:
        plan(templated, templated_alert(**labels))
    assert str(info.value) == message


def test_a_label_value_cannot_widen_the_silence_it_stays_the_matchers_value(
    templated: Playbook,
) -> None:
    # before issue 21 this value was refused only because the rendered matcher happened
    # not to parse; now it is escaped and the silence matches exactly that value
    hostile = 'x", alertname=~".*'
    [silence, _] = plan(templated, templated_alert(instance=hostile, silence_s="60"))
    assert silence.request["matchers"] == [
        {"name": "instance", "value": hostile, "isRegex": False, "isEqual": True}
    ]


# --- the command line ---------------------------------------------------------------------
def test_check_exits_0_on_the_valid_folder(
    at_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(VALID)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == "".join(f"{VALID / n}.yaml: ok ({n})\n" for n in VALID_NAMES)


def test_check_exits_1_listing_every_problem(
    at_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(INVALID), str(VALID)]) == 1
    out, err = capsys.readouterr()
    assert err == "".join(expected(name) for name in INVALID_NAMES)
    assert out == "".join(f"{VALID / n}.yaml: ok ({n})\n" for n in VALID_NAMES)


def test_schema_prints_the_playbook_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    schema = json.loads(out)
    assert schema["type"] == "object" and schema["title"] == "Playbook"
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert schema["properties"]["apiVersion"]["const"] == "vigil/v1"
    assert schema["additionalProperties"] is False
    steps = schema["$defs"]["Spec"]["properties"]["steps"]
    assert steps["minItems"] == 1 and steps["items"] == {"$ref": "#/$defs/Step"}


def run_simulate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["simulate", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    report: dict[str, Any] = json.loads(out)
    return report


def test_simulate_shows_the_exact_silence_and_every_verdict_without_side_effects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd would land here
    report = run_simulate(
        capsys, "--alert", str(SAMPLES / "webhook_01.json"), "--playbooks", str(ROOT / VALID)
    )
    assert report["alert"]["fingerprint"] == "89d523e42551dcff"
    [match] = report["matches"]
    assert match["playbook"] == "silence-research-alert"
    assert match["mode"] == "auto" and match["target"] == "-/service/research"
    assert match["file"] == str(ROOT / VALID / "silence-research-alert.yaml")
    silence, settle = match["plan"]
    assert silence["request"] == {
        "method": "POST",
        "path": "/api/v2/silences",
        "matchers": [
            {
                "name": "alertname",
                "value": "ResearchAlwaysFiring",
                "isRegex": False,
                "isEqual": True,
            },
            {"name": "service", "value": "research", "isRegex": False, "isEqual": True},
            {"name": "severity", "value": "info|warning", "isRegex": True, "isEqual": True},
        ],
        "duration_s": 1800.0,
        "comment": "run <simulated>: Always-firing test alert from Prometheus rule evaluation",
    }
    assert settle == {
        "step": "settle",
        "action": "wait",
        "params": {"seconds": 30.0},
        "request": {"wait_s": 30.0},
    }
    assert len(match["plan_hash"]) == 64
    assert match["guards"] == [
        {"guard": "kill_switch", "allow": True, "reason": "not paused"},
        {"guard": "namespace", "allow": True, "reason": "namespace '' allowed"},
        {"guard": "freeze", "allow": True, "reason": "no freeze window holds"},
        {"guard": "silence", "allow": True, "reason": "no matching silence"},
        {"guard": "cooldown", "allow": True, "reason": "no earlier action on this target"},
        {"guard": "rate", "allow": True, "reason": "0 of 4 runs in the window"},
        {"guard": "rate:global", "allow": True, "reason": "0 of 30 runs overall"},
        {"guard": "concurrency", "allow": True, "reason": "below the concurrency limits"},
        {"guard": "blast_radius", "allow": True, "reason": "1 target(s) affected"},
        {"guard": "circuit_breaker", "allow": True, "reason": "closed"},
    ]
    assert match["decision"] == {"act": True, "shadow": False, "reason": "all guards allow"}
    assert list(tmp_path.iterdir()) == []  # no audit database, no state folder


def test_simulate_never_reveals_secrets_and_reads_no_missing_audit_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    report = run_simulate(
        capsys,
        "--alert",
        str(SAMPLES / "webhook_02.json"),
        "--playbooks",
        str(ROOT / VALID),
        "--state-dir",
        str(state),
    )
    [match] = report["matches"]
    assert match["playbook"] == "notify-anomaly" and match["mode"] == "dryRun"
    notify, throttle = (s["request"] for s in match["plan"])
    assert notify == {
        "method": "POST",
        "url": "<secret>",
        "text": "z-score 6.1 on node_load1 on anomaly-svc; run <simulated>",
    }
    assert throttle == {
        "method": "POST",
        "url": "https://runbooks.example/api/v1/throttle",
        "headers": {"Authorization": "<secret runbook-token>", "X-Vigil-Run": "<simulated>"},
        "json": {"service": "anomaly-svc", "detector": "ewma-zscore", "percent": 50},
    }
    assert {
        "guard": "label:service",
        "allow": True,
        "reason": "label service='anomaly-svc' allowed",
    } in match["guards"]
    assert list(state.iterdir()) == []


def test_simulate_an_alert_no_playbook_matches(
    at_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert(alertname="Unrelated").to_json()))
    report = run_simulate(capsys, "--alert", str(path), "--playbooks", str(VALID))
    assert report["matches"] == []
    assert report["alert"]["labels"] == {"alertname": "Unrelated"}


def test_simulate_a_bad_alert_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alert.json"
    path.write_text("{")
    assert main(["simulate", "--alert", str(path), "--playbooks", str(ROOT / VALID)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"vigil-remediator: --alert {path}: ")


WORKER = {
    "alertname": "WorkerStuck",
    "namespace": "batch",
    "deployment": "worker",
    "tier": "worker",
}


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def simulate_worker(now: str, *, drop: str = "", **labels: str) -> dict[str, Any]:
    catalog = load_catalog([ROOT / VALID], REGISTRY)
    merged = {k: v for k, v in {**WORKER, **labels}.items() if k != drop}
    report = simulate(alert(**merged), catalog, REGISTRY, RemediatorConfig(), now_ms=ms(now))
    [match] = report["matches"]
    assert match["playbook"] == "restart-worker-approval"
    result: dict[str, Any] = match
    return result


def test_simulate_the_approval_playbook_on_a_weekday_morning() -> None:
    match = simulate_worker("2026-11-25T10:00:00")  # a Wednesday
    assert match["mode"] == "approval" and match["target"] == "batch/deployment/worker"
    assert [s["request"] for s in match["plan"]] == [
        {"promql": 'sum(batch_queue_depth{namespace="batch"}) < 1000', "expect": "nonempty"},
        {
            "method": "POST",
            "url": "https://runbooks.example/api/v1/restart/batch/worker",
            "headers": {},
            "json": {"reason": "stuck for 1h", "run": "<simulated>"},
        },
        {
            "method": "POST",
            "path": "/api/v2/alerts",
            "alertname": "VigilWorkerRestarted",
            "severity": "info",
        },
    ]
    # nothing was looked at: the report says what, and what would have looked
    assert match["not_evaluated"] == [
        "precondition 'sum(kube_deployment_status_replicas_available{namespace=\"{{ labels"
        '.namespace }}", deployment="{{ labels.deployment }}"}) >= 2\': not evaluated '
        "(give --prometheus URL)",
        "silence: Alertmanager's silences not read (give --alertmanager URL)",
    ]
    assert [(g["guard"], g["allow"]) for g in match["guards"]] == [
        ("kill_switch", True),
        ("namespace", True),
        ("label:tier", True),
        ("freeze", True),
        ("silence", True),
        ("cooldown", True),
        ("rate", True),
        ("rate:global", True),
        ("concurrency", True),
        ("blast_radius", True),
        ("circuit_breaker", True),
    ]
    assert match["decision"] == {"act": True, "shadow": False, "reason": "all guards allow"}


@pytest.mark.parametrize(
    "now,reason",
    [
        (
            "2026-11-28T12:00:00",
            "freeze: freeze window Fri 18:00–Mon 06:00 (UTC) holds: weekend freeze",
        ),
        (
            "2026-11-25T00:30:00",
            "freeze: freeze window 23:00–01:00 (UTC) holds: nightly batch window",
        ),
    ],
)
def test_simulate_shows_the_freeze_window_that_refuses(now: str, reason: str) -> None:
    match = simulate_worker(now)
    [freeze] = [g for g in match["guards"] if g["guard"] == "freeze"]
    assert freeze == {"guard": "freeze", "allow": False, "reason": reason.partition(": ")[2]}
    assert match["decision"] == {"act": False, "shadow": False, "reason": reason}


def test_simulate_reports_the_first_refusal() -> None:
    match = simulate_worker("2026-11-28T12:00:00", tier="api")  # a Saturday, too
    assert [g for g in match["guards"] if not g["allow"]] == [
        {
            "guard": "label:tier",
            "allow": False,
            "reason": "label tier='api' is not on the allow list (worker)",
        },
        {
            "guard": "freeze",
            "allow": False,
            "reason": "freeze window Fri 18:00–Mon 06:00 (UTC) holds: weekend freeze",
        },
    ]
    assert match["decision"] == {
        "act": False,
        "shadow": False,
        "reason": "label:tier: label tier='api' is not on the allow list (worker)",
    }


def test_simulate_reports_a_plan_that_cannot_be_built_and_does_not_act() -> None:
    match = simulate_worker("2026-11-25T10:00:00", drop="deployment")
    assert "plan" not in match and "plan_hash" not in match and match["target"] is None
    assert (
        match["plan_error"]
        == "step restart: {{ labels.deployment }}: the alert has no label 'deployment'"
    )
    assert match["decision"] == {"act": False, "shadow": False, "reason": match["plan_error"]}
