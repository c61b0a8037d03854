"""Fixtures of the Kubernetes API double for tests/kube (see tests/kube/fixtures.py)."""

from tests.kube.fixtures import kube_api, kube_double

__all__ = ["kube_api", "kube_double"]
