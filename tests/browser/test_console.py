"""The Vigil console in a real browser: Debian's chromium, headless, driven by Playwright,
against real vigil-detector, vigil-remediator and Alertmanager processes on loopback.

A level shift goes in through remote-write; the detector alerts Alertmanager, which
notifies the remediator; the run waits for approval. The test then reads the pages as a
person would: the anomaly's chart shows the anomalous stretch and links to the run that
followed, the run's timeline is there and can be approved with the admin token, the kill
switch works, the simulator shows a plan, and the main controls work from the keyboard.
Screenshots, the page weights and load times go to tests/browser/artifacts/.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import free_port, process, require, wait_until
from tests.integration.stack import ONE_SECOND_RULE, alertmanager, get_json, shifted, write

pytestmark = pytest.mark.browser
HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "console-test-admin-token"


def _am_config(path: Path, webhook: str) -> Path:
    path.write_text(f"""
route:
  receiver: vigil
  group_by: [alertname, metric_name]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: vigil
    webhook_configs:
      - url: {webhook}
        send_resolved: false
""")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Alertmanager, the remediator and the detector, with one anomaly fed in."""
    require("prometheus-alertmanager")
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError("chromium is not installed; `make test` installs it with apt-get")
    tmp = tmp_path_factory.mktemp("console")
    det_port, rem_port = free_port(), free_port()
    det, rem = f"http://127.0.0.1:{det_port}", f"http://127.0.0.1:{rem_port}"
    (tmp / "admin-token").write_text(TOKEN + "\n")
    (tmp / "remediator.yaml").write_text(f"auth: {{admin_token_file: {tmp / 'admin-token'}}}\n")
    am_cfg = _am_config(tmp / "am.yml", f"{rem}/webhook")
    with alertmanager("am", tmp, am_cfg) as (am, _):
        rem_argv = [
            sys.executable,
            "-m",
            "remediator",
            "serve",
            "--listen",
            f"127.0.0.1:{rem_port}",
            "--playbooks",
            str(HERE / "playbooks"),
            "--config",
            str(tmp / "remediator.yaml"),
            "--alertmanager",
            am,
            "--state-dir",
            str(tmp / "remediator"),
            "--detector-url",
            det,
        ]
        (tmp / "detector.yaml").write_text(ONE_SECOND_RULE)  # shifted() samples every second
        det_argv = [
            sys.executable,
            "-m",
            "detector",
            "serve",
            "--listen",
            f"127.0.0.1:{det_port}",
            "--alertmanager",
            am,
            "--remediator-url",
            rem,
            "--config",
            str(tmp / "detector.yaml"),
        ]
        with (
            process("remediator", rem_argv, tmp, ready_url=f"{rem}/readyz"),
            process("detector", det_argv, tmp, ready_url=f"{det}/readyz"),
        ):
            now = int(time.time() * 1000)
            series = shifted(
                "checkout_latency_seconds",
                end_ms=now,
                n_normal=340,
                n_shift=12,
                namespace="shop",
                service="checkout",
            )
            # as Prometheus sends it: the backlog first, then the recent samples
            write(det_port, [dataclasses.replace(series, samples=series.samples[:300])])
            write(det_port, [dataclasses.replace(series, samples=series.samples[300:])])

            def firing() -> list[dict[str, Any]]:
                data = get_json(f"{det}/api/v1/anomalies/recent")["data"]
                return [a for a in data if a["state"] == "firing"]

            wait_until("the detector fires", lambda: bool(firing()), timeout_s=60)
            [anomaly] = firing()
            # one per severity the alert went through (an escalation makes a new alert)
            fingerprints = anomaly["alert"]["fingerprints"]

            def runs() -> list[dict[str, Any]]:
                return [
                    r
                    for fp in fingerprints
                    for r in get_json(f"{rem}/api/v1/runs?fingerprint={fp}")["data"]
                ]

            wait_until("the remediator has a run for the alert", lambda: bool(runs()), timeout_s=60)
            yield {
                "det": det,
                "rem": rem,
                "am": am,
                "anomaly": anomaly,
                "fingerprints": fingerprints,
                "run": runs()[0],
            }


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A fresh browser and page (the async API: pytest-asyncio owns this thread's loop);
    the test fails on any script or console error (a CSP violation is one) and on any
    request that leaves loopback."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        p = await context.new_page()
        problems: list[str] = []
        outside: list[str] = []
        p.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        # (the browser logs the approval refused for want of the token, which is expected)
        p.on(
            "console",
            lambda msg: (
                problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" and "status of 401" not in msg.text
                else None
            ),
        )
        p.on(
            "request",
            lambda req: (
                outside.append(req.url)
                if not req.url.startswith(("http://127.0.0.1:", "data:"))
                else None
            ),
        )
        try:
            yield p
        finally:
            await context.close()
            await browser.close()
    assert problems == []
    assert outside == []  # no fonts, CDNs or tracking: everything comes from the services


async def _until(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    await asyncio.to_thread(wait_until, what, check, timeout_s)


def _record(name: str, figures: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "metrics.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc[name] = figures
    path.write_text(json.dumps(doc, indent=2) + "\n")


async def _weight(page: Any) -> dict[str, Any]:
    return dict(
        await page.evaluate("""() => {
        const nav = performance.getEntriesByType("navigation")[0];
        const res = performance.getEntriesByType("resource");
        const bytes = res.reduce((s, r) => s + r.encodedBodySize, nav.encodedBodySize);
        return {requests: res.length + 1, bytes,
                dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
                load_ms: Math.round(nav.loadEventEnd)};
    }""")
    )


async def test_the_anomaly_chart_shows_the_injected_shift_and_links_to_its_run(stack, page):
    ARTIFACTS.mkdir(exist_ok=True)
    anomaly = stack["anomaly"]
    start = time.perf_counter()
    await page.goto(stack["det"] + "/")
    stretch = page.locator("article.card svg.chart rect.stretch").first
    await stretch.wait_for()
    chart_ms = (time.perf_counter() - start) * 1000
    card = page.locator("article.card", has=page.locator("h2", has_text="checkout_latency"))
    assert await card.locator(".badge.firing").count() == 1
    assert int(await stretch.get_attribute("data-start-ms")) == anomaly["since_ms"]
    assert float(await stretch.get_attribute("width")) > 10
    chart = card.locator("svg.chart")
    assert (await chart.locator("path.value").get_attribute("d")).count("L") > 20
    assert await chart.locator("path.band").get_attribute("d")
    # the contract (docs/detectors.md): a lasting deviation keeps scoring, and the score
    # agrees with the band. All 12 shifted samples lie above the band and score high,
    # and "Score now" on the firing card is the band's level or more (it read 0.000000
    # while the band widened to swallow the shift)
    assert await chart.locator("circle.hot").count() >= 12
    score_now = card.locator("dt", has_text="Score now").locator("xpath=following-sibling::dd[1]")
    assert float(await score_now.text_content()) >= 0.999
    desc = await chart.locator("desc").text_content()
    assert "Anomalous from" in desc and "to now" in desc
    summary = anomaly["alert"]["annotations"]["summary"].split(", anomalous for")[0]
    assert summary in await card.text_content()  # "... anomalous for <duration>" moves on
    assert anomaly["alert"]["fingerprint"] in await card.text_content()
    am_link = card.get_by_role("link", name="Alertmanager")
    assert (await am_link.get_attribute("href")).startswith(stack["am"] + "/#/alerts?filter=")
    await page.screenshot(path=str(ARTIFACTS / "anomalies.png"), full_page=True)
    _record("anomalies", {**await _weight(page), "chart_visible_ms": round(chart_ms)})

    await card.get_by_role("link", name="Runs that followed").click()
    await page.wait_for_url(f"{stack['rem']}/#runs?fingerprint={','.join(stack['fingerprints'])}")
    run = page.locator(f"#runs tbody tr[data-run='{stack['run']['id']}']")
    await run.wait_for()
    text = await run.text_content()
    assert "silence-anomaly" in text and "waiting approval" in text
    await page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)


async def test_a_run_is_approved_in_the_console_with_the_admin_token(stack, page):
    rem, run = stack["rem"], stack["run"]
    await page.goto(f"{rem}/#run/{run['id']}")
    timeline = page.locator("#timeline")
    await timeline.wait_for()
    kinds = await timeline.locator("li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert {"decision", "guard", "plan"} <= set(kinds)
    assert await timeline.locator("li[data-kind=guard] .badge.allow").count() >= 1

    # without the token the approval is refused, and the page says why
    await page.fill("#approve-by", "on-call")
    await page.get_by_role("button", name="Approve plan").click()
    await page.get_by_text("Approval failed: this needs the admin token").wait_for()

    # the token, from the keyboard: the toggle, type, Enter
    await page.focus("#token-toggle")
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "token"
    await page.keyboard.type(TOKEN)
    await page.keyboard.press("Enter")
    await page.get_by_text("a token is set for this tab").wait_for()
    assert await page.evaluate("sessionStorage.getItem('vigil-admin-token')") == TOKEN
    await page.focus("#approve-by")
    await page.keyboard.press("Enter")  # submits the approval form
    await _until(
        "the approved run acts",
        lambda: (
            get_json(f"{rem}/api/v1/runs/{run['id']}")["state"]
            not in ("waiting_approval", "approved", "running", "verifying")
        ),
    )
    assert get_json(f"{rem}/api/v1/runs/{run['id']}")["state"] == "succeeded"
    await page.reload()
    await page.locator("#timeline li[data-kind=approval]", has_text="on-call").wait_for()
    await page.locator("#timeline li[data-kind=action_request]").first.wait_for()
    assert await page.locator("#approve-form").count() == 0
    await page.screenshot(path=str(ARTIFACTS / "run.png"), full_page=True)

    # the kill switch
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Pause remediation").click()
    await page.locator("#switch-state", has_text="remediation paused").wait_for()
    assert get_json(f"{rem}/api/v1/status")["paused"] is True
    await page.get_by_role("button", name="Resume").click()
    await page.locator("#switch-state", has_text="remediation active").wait_for()
    assert get_json(f"{rem}/api/v1/status")["paused"] is False


async def test_the_simulator_shows_the_plan_for_a_pasted_alert(stack, page):
    rem, run = stack["rem"], stack["run"]
    alert = get_json(f"{rem}/api/v1/runs/{run['id']}")["alert"]
    start = time.perf_counter()
    await page.goto(f"{rem}/#playbooks")
    row = page.locator("#playbooks tbody tr").first
    await row.wait_for()
    loaded_ms = (time.perf_counter() - start) * 1000
    text = await row.text_content()
    assert "silence-anomaly" in text and "valid" in text
    await page.fill("#sim-input", json.dumps(alert, indent=2))
    await page.get_by_role("button", name="Simulate").click()
    plan = page.locator(".sim-report .plan")
    await plan.wait_for()
    text = await plan.text_content()
    assert "alertmanager.silence" in text and "checkout_latency_seconds" in text
    assert await page.locator(".sim-report .badge.allow").count() >= 1
    await page.screenshot(path=str(ARTIFACTS / "playbooks.png"), full_page=True)
    _record("playbooks", {**await _weight(page), "table_visible_ms": round(loaded_ms)})


async def test_the_main_controls_work_from_the_keyboard(stack, page):
    await page.goto(stack["det"] + "/")
    await page.locator("article.card").first.wait_for()
    order = []
    for _ in range(8):
        await page.keyboard.press("Tab")
        order.append(
            await page.evaluate("""() => {
            const e = document.activeElement;
            const style = getComputedStyle(e);
            return [e.tagName, e.id || e.textContent.trim().slice(0, 30),
                    style.outlineStyle !== "none" && style.outlineWidth !== "0px"];
        }""")
        )
    names = [name for _, name, _ in order]
    assert names[:7] == [
        "Skip to the anomalies",
        "Anomalies",
        "nav-runs",
        "nav-playbooks",
        "refresh",
        "auto",
        "filter",
    ]
    assert all(visible for *_, visible in order), order  # focus is always visible
    # the skip link moves focus to the content
    await page.goto(stack["det"] + "/")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"

    # the remediator's sections, from the keyboard
    await page.goto(stack["rem"] + "/")
    await page.locator("#runs").wait_for()
    await page.get_by_role("link", name="Playbooks").focus()
    await page.keyboard.press("Enter")
    await page.locator("#playbooks").wait_for()
    await page.focus("#sim-input")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")  # past Simulate to "Fill in an example"
    await page.keyboard.press("Enter")
    assert "VigilAnomaly" in await page.input_value("#sim-input")
    assert await page.evaluate("document.activeElement.id") == "sim-input"  # back to edit
    await page.keyboard.press("Tab")  # Simulate
    await page.keyboard.press("Enter")
    await page.locator(".sim-report").wait_for()
