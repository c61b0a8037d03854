"""The ready-made deployment-validation integrations in deploy/ send what Vigil accepts:
the Argo Rollouts AnalysisTemplate's body is a valid verification request and its
conditions read the report's verdict; the Job is a valid batch/v1 Job (strict schema)
whose arguments the CLI parses; the CI examples' command lines parse too."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from detector.__main__ import _add_verify, _verify_request
from detector.verify import verdict
from tests.conftest import ROOT
from tests.deploy.test_cluster import KUBERNETES_VERSION

VERIFY = ROOT / "deploy" / "cluster" / "verify"
CI = ROOT / "deploy" / "ci"


def _cli_request(argv: list[str]) -> verdict.VerifyRequest:
    import argparse

    parser = argparse.ArgumentParser()
    _add_verify(parser.add_subparsers(dest="command"))
    return _verify_request(parser.parse_args(argv))


def test_the_analysis_template_posts_a_valid_request_and_reads_the_verdict():
    doc = yaml.safe_load((VERIFY / "analysistemplate.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    args = {a["name"]: a.get("value") for a in doc["spec"]["args"]}
    (metric,) = doc["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web["method"] == "POST" and web["url"].endswith("/api/v1/verify")
    assert web["jsonPath"] == "{$}"
    # what the detector insists on: a JSON body, and its token (fail closed)
    headers = {h["key"]: h["value"] for h in web["headers"]}
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer {{args.detector-token}}"
    token = next(a for a in doc["spec"]["args"] if a["name"] == "detector-token")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "vigil-detector-token", "key": "token"}
    sample = {
        "app": "shop",
        "namespace": "shop",
        "canary-hash": "6d9f7c",
        "stable-hash": "5b8c4a",
        "observe-seconds": args["observe-seconds"],
    }
    body = yaml.safe_dump(web["jsonBody"])
    used = set(re.findall(r"\{\{args\.([\w-]+)\}\}", body))
    assert used <= set(args), used - set(args)
    for name, value in sample.items():
        body = body.replace("{{args." + name + "}}", str(value))
    req = verdict.VerifyRequest.model_validate(yaml.safe_load(body))
    assert req.mode == "canary" and req.observe_s == 600
    assert req.canary == 'namespace="shop", pod=~"shop-6d9f7c-.*"'
    # the conditions name the report's field and its values
    for cond, outcome in (
        (metric["successCondition"], "pass"),
        (metric["failureCondition"], "fail"),
    ):
        assert cond == f'result.verdict == "{outcome}"'
    assert set(verdict.EXIT_CODES) == {"pass", "fail", "inconclusive"}


def test_the_job_is_a_valid_job_whose_arguments_the_cli_parses():
    job, policy = yaml.safe_load_all((VERIFY / "job.yaml").read_text())
    for obj in (job, policy):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == job["spec"]["template"]["metadata"]["labels"]
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vigil-detector"]
    env = {e["name"]: e["value"] for e in container["env"]}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    req = _cli_request(argv)
    assert req.selector == env["SELECTOR"] and req.observe_s == 900
    assert job["spec"]["backoffLimit"] == 0  # a verdict is not retried


@pytest.mark.parametrize("path", sorted(CI.glob("*.yml")), ids=lambda p: p.name)
def test_the_ci_examples_command_lines_parse(path: Path):
    text = path.read_text()
    yaml.safe_load(text)
    (block,) = re.findall(r"vigil-detector verify\n(.*?)--json", text, re.S)
    block = (
        block.replace('"$CHANGE_TIME"', "1795773600")
        .replace('"$PROMETHEUS_URL"', "http://prom:9090")
        .replace('"${{ secrets.PROMETHEUS_URL }}"', "http://prom:9090")
    )
    argv = ["verify", *shlex.split(block)]
    req = _cli_request(argv)
    assert req.selector == 'namespace="shop", job="shop"' and req.baseline_s == 1800
