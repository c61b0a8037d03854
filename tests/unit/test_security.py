"""Security properties that span both packages: no shell anywhere, token comparisons in
constant time, tokens and webhook bodies never logged (SECURITY.md)."""

from __future__ import annotations

import logging
import re

import pytest

from detector.config import DetectorConfig, read_bearer_token
from detector.errors import ConfigError
from remediator.config import RemediatorConfig
from tests.conftest import ROOT
from tests.unit.detector.apphelpers import V1, body, series, start
from tests.unit.remediator.test_app import notification
from tests.unit.remediator.test_app import start as start_remediator

TOKEN = "tok-SECRET-4f8a"
WRONG = "tok-WRONG-91c2"
ADMIN = "adm-SECRET-77d0"
MARKER = "webhook-body-MARKER-5e1b"

# a process, a shell or code from text: none of them belongs in either service
FORBIDDEN = re.compile(
    r"shell\s*=\s*True|\bos\.(system|popen|exec\w*|spawn\w*)\b|"
    r"\bsubprocess\b|create_subprocess_\w+|\bimport pty\b|"
    r"(?<![\w.])(eval|exec)\("
)
# (path, what the line may do): why. Only these exact uses, never a shell.
ALLOWED: dict[tuple[str, str], str] = {
    ("detector/fleet/supervisor.py", "create_subprocess_exec("): (
        "serve --workers N starts its own workers: this interpreter, -m detector, the "
        "supervisor's own arguments (no shell, nothing from a request or a label)"
    ),
    ("detector/fleet/supervisor.py", "asyncio.subprocess.Process"): "the type of those",
}


def test_no_shell_or_subprocess_in_either_package():
    found = []
    for package in ("detector", "remediator", "servicekit"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                rel = str(path.relative_to(ROOT))
                allowed = any(
                    rel == file and use in line and "shell" not in line for file, use in ALLOWED
                )
                if FORBIDDEN.search(line) and not allowed:
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_forbidden_pattern_catches_what_it_should():
    for line in (
        "subprocess.run(['ls'])",
        "os.system('x')",
        "x = os.popen('y')",
        "Popen(a, shell=True)",
        "await asyncio.create_subprocess_exec('x')",
        "eval(text)",
        "exec(code)",
    ):
        assert FORBIDDEN.search(line), line
    for line in ("executor.submit(f)", "self.execute(run)", "retrieval(x)"):
        assert not FORBIDDEN.search(line), line


def test_every_token_comparison_is_constant_time():
    """Wherever a token or an Authorization header is compared, hmac.compare_digest does it:
    in servicekit.bearer, the one parser both services call."""
    offenders = []
    for package in ("detector", "remediator", "servicekit"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(
                    r"(token|authorization|Authorization)\S*\s*[!=]=|"
                    r"[!=]=\s*\S*(token|Authorization)",
                    line,
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert "hmac.compare_digest" in (ROOT / "servicekit/bearer.py").read_text()


def test_every_authorization_header_is_parsed_by_servicekit_bearer():
    """One rule in both services: an incoming Authorization header goes straight to
    servicekit.bearer (the two hand-written copies had drifted apart)."""
    reads, offenders = 0, []
    for package in ("detector", "remediator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for n, line in enumerate(text.splitlines(), 1):
                if re.search(r"headers\.get\([\"']Authorization", line):
                    reads += 1
                    if (
                        "bearer.is_authorized(" not in line
                        and "bearer.parse_credential(" not in line
                    ):
                        offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    # the detector's WriteHandler, the remediator's access.authorized, access.decider (whose
    # token is compared with the users file's hashes by remediator.identity), and a
    # --workers worker passing the reload token it accepted on to its peers
    assert reads == 4


def _assert_never_logged(caplog, *secrets):
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    for secret in secrets:
        assert secret not in text, f"{secret!r} was logged"


async def test_the_detector_never_logs_its_token(aiohttp_client, caplog):
    caplog.set_level(logging.DEBUG)
    client, _rt = await start(aiohttp_client, DetectorConfig(), token=TOKEN)
    payload = body([series("up", 1_717_243_200_000, 1.0, job=MARKER)])
    statuses = []
    for auth in (f"Bearer {TOKEN}", f"Bearer {WRONG}", "", f"Basic {WRONG}"):
        headers = {**V1, **({"Authorization": auth} if auth else {})}
        statuses.append((await client.post("/api/v1/write", data=payload, headers=headers)).status)
        resp = await client.post(
            "/api/v1/verify",
            data=b"{}",
            headers={
                "Content-Type": "application/json",
                **({"Authorization": auth} if auth else {}),
            },
        )
        statuses.append(resp.status)
    assert statuses == [204, 503, 401, 401, 401, 401, 401, 401]  # 503: no --prometheus
    _assert_never_logged(caplog, TOKEN, WRONG)


async def test_the_remediator_never_logs_tokens_or_webhook_bodies(aiohttp_client, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client, st, _fake, _clock = await start_remediator(
        aiohttp_client, tmp_path, admin=ADMIN, cfg=RemediatorConfig()
    )
    st.token = TOKEN
    note = notification()
    note["alerts"][0]["annotations"]["summary"] = MARKER
    for auth in (f"Bearer {TOKEN}", f"Bearer {WRONG}", ""):
        await client.post("/webhook", json=note, headers={"Authorization": auth} if auth else {})
    for auth in (f"Bearer {ADMIN}", f"Bearer {WRONG}"):
        await client.post("/api/v1/pause", headers={"Authorization": auth})
        await client.post("/api/v1/resume", headers={"Authorization": auth})
    await client.post(
        "/webhook",
        data=b'{"broken": "' + MARKER.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    _assert_never_logged(caplog, TOKEN, WRONG, ADMIN, MARKER)


def test_a_token_file_error_names_the_file_never_a_token(tmp_path):
    path = tmp_path / "token"
    path.write_text("  \n")
    cfg = DetectorConfig.model_validate({"auth": {"bearer_token_file": path}})
    with pytest.raises(ConfigError, match="is empty"):
        read_bearer_token(cfg)
    assert read_bearer_token(cfg, {"VIGIL_DETECTOR_TOKEN": f" {TOKEN} "}) == TOKEN
    assert read_bearer_token(DetectorConfig(), {}) is None


def test_every_test_security_md_cites_exists() -> None:
    """SECURITY.md backs each claim with a test in brackets; a renamed or deleted test
    must not leave a claim standing on nothing."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "SECURITY.md").read_text()
    sources = {p: p.read_text() for p in (root / "tests").rglob("*.py")}
    defined = set().union(
        *(re.findall(r"^\s*(?:async )?def (test_\w+)", src, re.M) for src in sources.values())
    )
    cited = 0
    for span in re.findall(r"`([^`]+)`", text):
        for ref in re.findall(r"(tests/[\w/]+\.py)(?:::(test_\w+))?", span):
            path, name = ref
            assert (root / path).is_file(), f"SECURITY.md cites {path}, which does not exist"
            if name:
                assert re.search(rf"def {name}\b", sources[root / path]), f"{path}::{name}"
            cited += 1
        for name in re.findall(r"(?<![\w/:])(test_\w+)(?![\w.])", span):
            assert name in defined, f"SECURITY.md cites {name}, which no test defines"
            cited += 1
    assert cited > 20
