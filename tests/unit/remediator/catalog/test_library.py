"""The shipped playbooks (playbooks/) load cleanly; each plan is checked in tests/kube."""

from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from tests.conftest import ROOT


def test_the_shipped_playbooks_are_valid():
    catalog = load_catalog([ROOT / "playbooks"], build_registry())
    assert catalog.problems == ()
    assert sorted(e.playbook.name for e in catalog.entries) == [
        "cert-expiry-escalate",
        "crashloop-delete-pod",
        "evicted-pods-cleanup",
        "hpa-maxed-scale-up",
        "memory-growth-restart",
        "node-drain",
        "rollback-bad-rollout",
    ]
