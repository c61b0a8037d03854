import pytest

from detector.config import DetectorConfig, EnsembleParams, RobustParams, load_config
from detector.errors import ConfigError


def test_no_file_tracks_everything_with_defaults():
    cfg = load_config(None)
    assert [r.name for r in cfg.series] == ["default"]
    assert cfg.series[0].match is None


def test_valid_file_loads(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text(
        "limits:\n  max_series: 10\n"
        "series:\n"
        "  - name: api\n    match: '{job=\"api\"}'\n    max_series: 5\n"
        "    detector: {kind: robust, alpha: 0.1}\n"
        "  - name: rest\n"
    )
    cfg = load_config(path)
    assert isinstance(cfg, DetectorConfig)
    assert cfg.limits.max_series == 10
    assert isinstance(cfg.series[0].detector, RobustParams)
    assert cfg.series[0].detector.alpha == 0.1


def test_errors_carry_file_line_and_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "limits:\n"
        "  max_series: 0\n"
        "series:\n"
        "  - name: api\n"
        "    match: '{job=\"api\"'\n"
        "    detector:\n"
        "      kind: robust\n"
        "      alpha: 2\n"
        "  - name: api\n"
        "    colour: red\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:2: limits.max_series: Input should be greater than or equal to 1" in text
    assert f"{path}:5: series[0].match: selector" in text
    assert f"{path}:8: series[0].detector.alpha: Input should be less than 1" in text
    assert f"{path}:10: series[1].colour: Extra inputs are not permitted" in text


def test_duplicate_rule_names_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("series:\n  - name: a\n  - name: a\n")
    with pytest.raises(ConfigError, match="used twice"):
        load_config(path)


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("limits:\n  max_series: [1,\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: \(root\): invalid YAML"):
        load_config(path)


def test_detector_kind_defaults_to_ensemble_and_unknown_kind_is_refused(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text(
        "series:\n  - name: a\n    detector: {alpha_fast: 0.05}\n"
        "  - name: b\n    detector: {kind: prophet}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        f"{path}:5: series[1].detector: 'prophet' is not one of 'robust', 'ensemble', "
        "'spot'" in str(info.value)
    )
    path.write_text("series:\n  - name: a\n    detector: {alpha_fast: 0.05}\n")
    assert load_config(path).series[0].detector.kind == "ensemble"


def test_alert_rules_load_and_default_covers_everything(tmp_path):
    assert [r.name for r in load_config(None).alerts] == ["VigilAnomaly"]
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "alerts:\n"
        "  - name: LatencyAnomaly\n"
        "    match: '{__name__=~\".*_seconds\"}'\n"
        "    severities: [{severity: ticket, score: 0.999}, {severity: page, score: 0.99999}]\n"
        "    for_samples: 4\n"
        "    resolve_below: 0.99\n"
        "    by: [namespace, service]\n"
        "    labels: {team: payments}\n"
        "    annotations: {note: 'p99 of {labels.service} is {value}'}\n"
        "    runbook_url: 'https://runbooks.example/{alertname}'\n"
    )
    [rule] = load_config(path).alerts
    assert rule.by == ("namespace", "service") and rule.normal_below == 0.99


def test_alert_rule_errors_name_file_line_and_path(tmp_path):
    path = tmp_path / "bad-alerts.yaml"
    path.write_text(
        "alerts:\n"
        "  - name: A\n"
        "    severities: [{severity: hi, score: 0.999}, {severity: lo, score: 0.99}]\n"
        "  - name: B\n"
        "    annotations: {x: '{valu}'}\n"
        "    labels: {alertname: nope}\n"
        "  - name: C\n"
        "    resolve_below: 0.99999\n"
        "    by: ['not a label']\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"{path}:3: alerts[0].severities: " in text and "strictly ascending" in text
    assert f"{path}:5: alerts[1].annotations: " in text and "unknown template field {valu}" in text
    assert f"{path}:6: alerts[1].labels: " in text and "cannot be an extra label" in text
    assert f"{path}:9: alerts[2].by: " in text and "'not a label' is not a label name" in text


def test_halfspacetrees_without_river_is_a_config_error_saying_what_to_install(monkeypatch):
    import importlib.util

    from pydantic import ValidationError

    from detector.config import EntityModel

    assert EntityModel(kind="halfspacetrees").kind == "halfspacetrees"  # river is here
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "river" else real(name, *a)
    )
    with pytest.raises(ValidationError, match=r"pip install 'vigil\[river\]'"):
        EntityModel(kind="halfspacetrees")


def test_every_seconds_field_takes_prometheus_durations(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(
        "alerts:\n"
        "  - name: A\n"
        "    for_s: 1h30m\n"
        "    resolve_s: 90s\n"
        "alerting: {resend_s: 1m, related_window_s: 15m}\n"
        "warm_start: {history_s: 6h, period_candidates_s: [1d, 1w]}\n"
        "series:\n"
        "  - name: default\n"
        "    detector: {kind: ensemble, season_period_s: 1d, adopt_after_s: 0}\n"
        "checkpoint: {interval_s: 30}\n"
    )
    cfg = load_config(path)
    assert (cfg.alerts[0].for_s, cfg.alerts[0].resolve_s) == (5400.0, 90.0)
    assert (cfg.alerting.resend_s, cfg.alerting.related_window_s) == (60.0, 900.0)
    assert cfg.warm_start.history_s == 21600.0
    assert cfg.warm_start.period_candidates_s == (86400.0, 604800.0)
    assert isinstance(cfg.series[0].detector, EnsembleParams)
    assert cfg.series[0].detector.season_period_s == 86400.0
    assert cfg.checkpoint.interval_s == 30.0


def test_bad_durations_are_reported_at_their_line_without_validator_internals(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(
        "alerts:\n  - name: A\n    for_s: 30m1h\nalerting:\n  resend_s: 0s\n  timeout_s: 1.5h\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert lines[0] == (
        f"{path}:3: alerts[0].for_s: '30m1h': units must go from largest "
        "to smallest, each once (e.g. 1h30m, not 30m1h)"
    )
    assert lines[1] == f"{path}:5: alerting.resend_s: Input should be greater than 0"
    assert lines[2].startswith(f"{path}:6: alerting.timeout_s: '1.5h' is not a duration")
    assert "Value error" not in str(err.value)
