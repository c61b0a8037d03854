"""Absurd durations in a playbook are refused when it is loaded, with file:line, not when
a run meets them: `approval_ttl_s: .inf` once loaded and then failed every run of the
playbook at intake (`int(ttl * 1000)`), so no approval was ever asked for."""

import re

import pytest

from tests.unit.remediator.test_app import start
from tests.unit.remediator.test_approvals import approval_playbook


@pytest.mark.parametrize("ttl", [".inf", ".nan", "99999999999y", "9" * 40 + "y", "١٢m"])
async def test_an_absurd_approval_ttl_refuses_the_playbook_at_load(aiohttp_client, tmp_path, ttl):
    pb = approval_playbook(tmp_path, "max_concurrent: 5", f"approval_ttl_s: {ttl}")
    _, st, _, _ = await start(aiohttp_client, tmp_path, playbooks=[pb], admin="adm")
    assert [e.playbook.name for e in st.catalog.entries] == []
    [problem] = [p for p in st.catalog.problems if "approval_ttl_s" in str(p)]
    assert re.search(rf"{re.escape(pb.name)}:\d+: spec\.guards\.approval_ttl_s: ", str(problem))
