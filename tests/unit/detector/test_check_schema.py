"""``vigil-detector check`` (exit 0 valid, 1 problems, 2 usage; every problem in one pass,
no validator internals) and ``vigil-detector schema`` (the config's JSON Schema)."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from detector.__main__ import main
from detector.config import SCHEMA_ID, load_config

ROOT = Path(__file__).resolve().parents[3]
BAD = """\
series:
  - name: a
    detector: {kind: foo}
  - name: b
    detector: {kind: spot, risk: x}
alerts:
  - for_s: 30m1h
    severities: [{severity: hi, score: 0.999}, {severity: lo, score: 0.99}]
limits: 7
bogus: true
"""


def test_check_exit_codes_and_every_problem_in_one_pass(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("alerts: [{name: A, for_s: 1h30m}]\n")
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert sorted(err[:-1]) == sorted(
        [
            f"{bad}:9: limits: Input should be a mapping (key: value)",
            f"{bad}:3: series[0].detector: 'foo' is not one of 'robust', 'ensemble', 'spot'",
            f"{bad}:5: series[1].detector.risk: Input should be a valid number, unable to parse "
            "string as a number",
            f"{bad}:7: alerts[0].for_s: '30m1h': units must go from largest to smallest, each "
            "once (e.g. 1h30m, not 30m1h)",
            f"{bad}:8: alerts[0].severities: thresholds must be strictly ascending",
            f"{bad}:10: bogus: Extra inputs are not permitted",
        ]
    )
    assert err[-1] == f"vigil-detector check: 6 problems in {bad}"
    for line in err:  # no pydantic internals: class names, function names, error urls
        assert not re.search(r"Value error|_kind_of|errors\.pydantic|Params\b|\[type=", line)
    assert main(["check", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["check"])
    assert usage.value.code == 2


def _schema(capsys) -> dict:
    assert main(["schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_schema_is_2020_12_with_an_id_and_the_fields_editors_need(capsys):
    schema = _schema(capsys)
    assert schema["$id"] == SCHEMA_ID and schema["$schema"].endswith("2020-12/schema")
    jsonschema.Draft202012Validator.check_schema(schema)
    alert = schema["$defs"]["AlertRule"]["properties"]
    assert alert["for_s"]["description"].startswith("the anomaly must have lasted")
    assert {"type": "number", "minimum": 0.0} in alert["for_s"]["anyOf"]
    assert alert["for_s"]["default"] == 60.0


def _readme_config() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Configuration") :]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.S)
    assert block is not None, "README.md: no yaml block under ### Configuration"
    return block.group(1)


def test_the_readme_example_passes_schema_and_loader_and_bad_files_fail_both(capsys, tmp_path):
    validator = jsonschema.Draft202012Validator(_schema(capsys))
    example = _readme_config()
    assert example.startswith("# yaml-language-server: $schema=")
    assert list(validator.iter_errors(yaml.safe_load(example))) == []
    path = tmp_path / "detector.yaml"
    path.write_text(example)
    load_config(path)  # the modeline is a comment to the loader
    bad = yaml.safe_load(BAD.replace("limits: 7\n", ""))
    messages = [e.message for e in validator.iter_errors(bad)]
    assert "Additional properties are not allowed ('bogus' was unexpected)" in messages
