"""Durations in the remediator: playbook guards, verify, action params and the config take
Prometheus syntax (``1h30m``) wherever they take seconds, through servicekit's one parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from remediator.config import load_config

PLAYBOOK = """\
apiVersion: vigil/v1
kind: Playbook
metadata:
  name: silence-with-durations
  description: every seconds field written as a duration
  owner: observability
spec:
  match:
    labels: {alertname: ResearchAlwaysFiring}
  mode: auto
  guards:
    cooldown_s: 1h
    approval_ttl_s: 30m
    rate: {max_runs: 4, window_s: 1d}
  steps:
    - name: silence
      action: alertmanager.silence
      params:
        matchers: ['alertname="{{ labels.alertname }}"']
        duration_s: 1h30m
        comment: quiet
    - name: settle
      action: wait
      params: {seconds: 45s}
  verify:
    - query: 'vector(1)'
      within_s: 2m
      interval_s: 15s
"""


def test_playbook_seconds_fields_take_durations(tmp_path: Path) -> None:
    (tmp_path / "silence-with-durations.yaml").write_text(PLAYBOOK, encoding="utf-8")
    registry = build_registry()
    catalog = load_catalog([tmp_path], registry)
    assert catalog.problems == ()
    spec = catalog.entries[0].playbook.spec
    assert (spec.guards.cooldown_s, spec.guards.approval_ttl_s) == (3600.0, 1800.0)
    assert spec.guards.rate is not None and spec.guards.rate.window_s == 86400.0
    assert (spec.verify[0].within_s, spec.verify[0].interval_s) == (120.0, 15.0)
    silence, settle = spec.steps
    silence_spec, wait_spec = registry.get(silence.action), registry.get(settle.action)
    assert silence_spec is not None and wait_spec is not None
    assert silence_spec.params.model_validate(silence.params).duration_s == 5400.0  # type: ignore[attr-defined]
    assert wait_spec.params.model_validate(settle.params).seconds == 45.0  # type: ignore[attr-defined]


def test_a_bad_duration_in_a_playbook_is_one_problem_line(tmp_path: Path) -> None:
    path = tmp_path / "silence-with-durations.yaml"
    path.write_text(PLAYBOOK.replace("cooldown_s: 1h", "cooldown_s: 30m1h"), encoding="utf-8")
    catalog = load_catalog([tmp_path], build_registry())
    assert catalog.problems == (
        f"{path}:12: spec.guards.cooldown_s: '30m1h': units must go from largest to "
        "smallest, each once (e.g. 1h30m, not 30m1h)",
    )


def test_a_bad_action_param_duration_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "silence-with-durations.yaml"
    path.write_text(PLAYBOOK.replace("seconds: 45s", "seconds: 2h"), encoding="utf-8")
    problems = load_catalog([tmp_path], build_registry()).problems
    assert len(problems) == 1
    assert problems[0].endswith(
        "spec.steps[1].params.seconds: Input should be less than or equal to 3600"
    )


def test_config_seconds_fields_take_durations(tmp_path: Path) -> None:
    path = tmp_path / "remediator.yaml"
    path.write_text("audit: {retention_s: 90d, prune_interval_s: 1h}\n", encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.audit.retention_s, cfg.audit.prune_interval_s) == (90 * 86400.0, 3600.0)
    path.write_text("audit: {retention_s: 1.5d}\n", encoding="utf-8")
    with pytest.raises(
        Exception,
        match=r"remediator.yaml:1: audit.retention_s: '1.5d' is "
        "not a duration",
    ):
        load_config(path)
