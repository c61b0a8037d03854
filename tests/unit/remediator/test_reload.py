"""Hot reload: the config, its users file and the playbooks are validated together and
switched together; a bad one changes nothing, logs every problem as
``file:line: path: message`` and sets the reload metrics; runs in flight finish with the
playbook they started with; webhooks arriving during reloads are all recorded and run."""

import asyncio
import hashlib
import logging

from prometheus_client import CollectorRegistry

from remediator import reloading
from remediator.app import STATE, build_app
from remediator.audit.store import TERMINAL, RunState
from remediator.config import RemediatorConfig, load_config
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import HERE, Clock, drained, notification, settle

ADMIN = {"Authorization": "Bearer adm"}
PLAYBOOK = (
    (HERE / "playbooks" / "silence-noisy-disk.yaml")
    .read_text()
    .replace("cooldown_s: 600", "cooldown_s: 0\n    max_concurrent: 100")
    .replace("max_runs: 5", "max_runs: 10000")
)
GOOD = "guards:\n  max_concurrent: 500\n  rate: {max_runs: 10000, window_s: 1h}\n"


async def start(aiohttp_client, tmp_path, *, services=None, config=GOOD):
    book = tmp_path / "playbooks"
    book.mkdir()
    (book / "silence-noisy-disk.yaml").write_text(PLAYBOOK)
    path = tmp_path / "remediator.yaml"
    path.write_text(config)
    metrics = CollectorRegistry()
    clock = Clock()
    app = build_app(
        load_config(path),
        playbook_dirs=[book],
        state_dir=tmp_path,
        services=services or FakeServices(),
        admin_token="adm",
        clock=clock,
        sleep=clock.sleep,
        external_url="http://vigil:9421",
        metrics=metrics,
        load_config=lambda: load_config(path),
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    return client, st, book, path, metrics, clock


def gauge(metrics, name):
    return metrics.get_sample_value(name)


async def reload(client):
    resp = await client.post("/-/reload", headers=ADMIN)
    return resp.status, await resp.json()


async def test_a_bad_config_or_playbook_changes_nothing_and_says_where(
    aiohttp_client, tmp_path, caplog
):
    client, st, book, path, metrics, clock = await start(aiohttp_client, tmp_path)
    assert gauge(metrics, "vigil_config_last_reload_successful") == 1
    started = gauge(metrics, "vigil_config_last_reload_success_timestamp_seconds")
    assert started == clock.now
    before_cfg, before_catalog = st.cfg, st.catalog
    path.write_text(GOOD + "guards_typo: 1\n")
    (book / "broken.yaml").write_text(
        "apiVersion: vigil/v1\nkind: Playbook\nmetadata: {name: broken}\nspec:\n  steps: []\n"
    )
    clock.now += 10
    with caplog.at_level(logging.ERROR, logger="remediator.runtime"):
        status, doc = await reload(client)
    assert status == 422 and doc["reloaded"] is False
    assert f"{path}:4: guards_typo: Extra inputs are not permitted" in doc["problems"]
    assert any(
        p.startswith(f"{book / 'broken.yaml'}:") and "spec.match" in p for p in doc["problems"]
    )
    # every problem logged on its own line, as file:line: path: message
    logged = [r.getMessage() for r in caplog.records]
    for problem in doc["problems"]:
        assert f"reload: {problem}" in logged
    assert st.cfg is before_cfg and st.catalog is before_catalog
    assert gauge(metrics, "vigil_config_last_reload_successful") == 0
    assert gauge(metrics, "vigil_config_last_reload_success_timestamp_seconds") == started
    # fixed: everything switches, the metrics say so
    path.write_text(GOOD.replace("500", "7"))
    (book / "broken.yaml").unlink()
    status, doc = await reload(client)
    assert (status, doc["reloaded"], doc["problems"]) == (200, True, [])
    assert st.cfg.guards.max_concurrent == 7
    assert st.runner.decider.limits.max_concurrent == 7
    assert st.runner.approvals.limits.max_concurrent == 7
    assert gauge(metrics, "vigil_config_last_reload_successful") == 1
    assert gauge(metrics, "vigil_config_last_reload_success_timestamp_seconds") == clock.now
    assert metrics.get_sample_value("vigil_config_reloads_total", {"result": "failure"}) == 1
    assert metrics.get_sample_value("vigil_config_reloads_total", {"result": "success"}) == 1


async def test_settings_only_a_restart_applies_stay_and_are_named(aiohttp_client, tmp_path, caplog):
    client, st, _, path, _, _ = await start(aiohttp_client, tmp_path)
    path.write_text(
        GOOD + "max_body_bytes: 2048\nmax_alerts_per_webhook: 3\n"
        "auth: {admin_token_file: /nowhere, groups: {sre: [alice]}}\n"
    )
    with caplog.at_level(logging.WARNING, logger="remediator.runtime"):
        assert (await reload(client))[0] == 200
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "reload: auth.admin_token_file changed; it takes effect at the next restart",
        "reload: max_body_bytes changed; it takes effect at the next restart",
    ]
    assert st.cfg.max_body_bytes == RemediatorConfig().max_body_bytes
    assert st.cfg.auth.admin_token_file is None
    assert st.cfg.max_alerts_per_webhook == 3 and st.cfg.auth.groups == {"sre": ("alice",)}
    body = notification()
    body["alerts"] = body["alerts"] * 4
    assert (await client.post("/webhook", json=body)).status == 400  # 4 > 3, reloaded


async def test_a_user_added_to_the_users_file_may_approve_after_a_reload(aiohttp_client, tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    client, st, _, _path, _, _ = await start(
        aiohttp_client, tmp_path, config=GOOD + f"auth: {{users_file: {users}}}\n"
    )
    token = "dana-token-0042"
    users.write_text(
        f"users:\n  dana:\n    token_sha256: {hashlib.sha256(token.encode()).hexdigest()}\n"
    )
    assert st.users.entries == {}
    assert (await reload(client))[0] == 200
    assert set(st.users.entries) == {"dana"}
    users.write_text("users:\n  dana:\n    token_sha256: nope\n")
    status, doc = await reload(client)
    assert status == 422 and doc["problems"] == [
        f"{users}:3: users.dana.token_sha256: String should match pattern '^[0-9a-f]{{64}}$'"
    ]
    assert set(st.users.entries) == {"dana"}  # the last good file stays


class GatedProm(FakeServices):
    """Verification queries wait until the test opens the gate: a run held in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def prometheus_query(self, query):
        self.waiting.set()
        await self.gate.wait()
        return [{"value": [0, "1"]}]


async def test_a_run_in_flight_finishes_with_the_playbook_it_started_with(aiohttp_client, tmp_path):
    fake = GatedProm()
    client, st, book, _path, _, _ = await start(aiohttp_client, tmp_path, services=fake)
    assert (await client.post("/webhook", json=notification())).status == 200
    async with asyncio.timeout(5):
        await fake.waiting.wait()  # the silence is made; verification waits
    (book / "silence-noisy-disk.yaml").unlink()  # the playbook goes away
    assert (await reload(client))[0] == 200 and st.catalog.entries == ()
    fake.gate.set()
    [run] = await settle(st, lambda runs: runs and runs[0].state in TERMINAL)
    assert run.state == RunState.SUCCEEDED


async def test_webhooks_arriving_during_reloads_are_all_recorded_and_run(aiohttp_client, tmp_path):
    fake = FakeServices()
    client, st, book, path, metrics, _ = await start(aiohttp_client, tmp_path, services=fake)
    n = 60
    for i in range(n):
        fake.query_results[f'up{{instance="db-{i}:9100"}} == 1'] = [{"value": [0, "1"]}]
    variants = [GOOD, GOOD + "nonsense: true\n", GOOD.replace("500", "400"), "guards: [\n"]

    outcomes: list[int] = []
    seen: list[int] = []  # reloads done when each webhook was sent

    async def webhooks():
        statuses = []
        for i in range(n):
            seen.append(len(outcomes))
            resp = await client.post(
                "/webhook", json=notification(fingerprint=f"f{i}", instance=f"db-{i}:9100")
            )
            statuses.append(resp.status)
        return statuses

    async def reloads():
        for i in range(n // 2):
            path.write_text(variants[i % len(variants)])
            if i % 3 == 0:  # a good change to the playbook too
                (book / "silence-noisy-disk.yaml").write_text(
                    PLAYBOOK.replace("flapping disk", f"flapping disk (v{i})")
                )
            status, _ = await (reload(client) if i % 2 else _direct(st))
            outcomes.append(status)

    statuses, _ = await asyncio.gather(webhooks(), reloads())
    assert statuses == [200] * n
    assert any(0 < k < n // 2 for k in seen), "the webhooks did not meet the reloads"
    assert sorted(set(outcomes)) == [200, 422]
    await drained(st, timeout_s=30)
    runs = await st.audit.run(lambda db: db.list_runs(limit=1000))
    assert len(runs) == n and {r.state for r in runs} == {RunState.SUCCEEDED}
    assert {r.fingerprint for r in runs} == {f"f{i}" for i in range(n)}
    # the last reload was GOOD.replace(...) or a bad one: the metric says which
    last_ok = (n // 2 - 1) % len(variants) in (0, 2)
    assert gauge(metrics, "vigil_config_last_reload_successful") == (1 if last_ok else 0)


async def _direct(st):
    fresh = await st.reload_all()
    return (200 if fresh.ok else 422), list(fresh.problems)


def test_restart_only_names_what_a_reload_does_not_apply():
    old = RemediatorConfig()
    new = RemediatorConfig.model_validate(
        {
            "max_body_bytes": 4096,
            "external_url": "http://x",
            "http": {"allowed_urls": ["h"]},
            "auth": {"trusted_user_header": "X-User", "bearer_token_file": "/t"},
        }
    )
    assert reloading.restart_only(old, new) == [
        "auth.bearer_token_file",
        "external_url",
        "max_body_bytes",
    ]
    merged = reloading.effective(old, new)
    assert merged.http.allowed_urls == ("h",) and merged.auth.trusted_user_header == "X-User"
    assert merged.max_body_bytes == old.max_body_bytes and merged.external_url is None
    assert merged.auth.bearer_token_file is None
