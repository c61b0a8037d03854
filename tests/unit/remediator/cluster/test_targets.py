"""Target labels are checked against Kubernetes' name rules before anything else looks at
them (pure: ``targets.label_problems``), and ``kubernetes.scale``'s step never moves the
count against the requested direction (pure: ``k8s.scale_to``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.actions import k8s
from remediator.cluster import targets

VALID = {
    "namespace": ["shop", "kube-system", "a", "a" * 63, "0abc"],
    "pod": ["web-7d4b9c-x2x", "a.b.c", "a" * 253, "node-1.example.com"],
    "node": ["ip-10-0-0-1.eu-west-1.compute.internal", "node-4"],
    "deployment": ["checkout"],
    "service": ["api", "a" * 63],
    "container": ["app", "istio-proxy"],
}
INVALID = {
    "namespace": [
        "../../etc",
        "Shop",
        "shop?dryRun=All",
        "a.b",
        "a" * 64,
        "-a",
        "a-",
        "shop\n",
        "sh op",
        "shop/x",
    ],
    "pod": [
        "web/1",
        "web/../../../apis/apps/v1",
        "web-1\n",
        "a" * 254,
        "{{ run.url }}",
        "a..b",
        ".a",
        "a.",
        "a_b",
        "Web-1",
        "ü",
    ],
    "node": ["node/4", "NODE-4"],
    "deployment": ["check out", "a" * 254],
    "statefulset": ["db%2F1"],
    "daemonset": ["x:y"],
    "job": ["a;b"],
    "replicaset": ["a" * 300],
    "service": ["1api", "api.v1", "a" * 64],
    "container": ["app.v1", "a" * 64],
}


@pytest.mark.parametrize(("label", "value"), [(k, v) for k, vs in VALID.items() for v in vs])
def test_a_kubernetes_name_passes(label: str, value: str) -> None:
    assert targets.label_problems({label: value, "alertname": "X"}) == []


@pytest.mark.parametrize(("label", "value"), [(k, v) for k, vs in INVALID.items() for v in vs])
def test_a_label_outside_the_name_rules_is_a_problem_that_names_it(label: str, value: str) -> None:
    [problem] = targets.label_problems({label: value, "alertname": "X"})
    assert problem.startswith(f"label {label}=")
    assert "is not a Kubernetes name" in problem


def test_the_reason_says_which_rule_and_why() -> None:
    assert targets.label_problems({"namespace": "a" * 64}) == [
        f"label namespace={'a' * 64!r} is not a Kubernetes name: it is 64 characters long; "
        "a DNS-1123 label has at most 63"
    ]
    [problem] = targets.label_problems({"pod": "web/1"})
    assert "is not a DNS-1123 subdomain" in problem
    [problem] = targets.label_problems({"pod": "x" * 300})
    assert "x" * 81 not in problem  # a long value is shortened in the message


def test_every_bad_label_is_reported_and_others_are_not_checked() -> None:
    problems = targets.label_problems(
        {
            "namespace": "A",
            "pod": "b/c",
            "instance": "db:9100",
            "alertname": "Any Thing",
            "node": "",
        }
    )
    assert [p.split("=")[0] for p in problems] == ["label namespace", "label pod"]


@given(st.text(max_size=300))
def test_anything_that_passes_is_safe_in_an_api_path(value: str) -> None:
    if not targets.label_problems({"pod": value, "namespace": value}):
        assert "/" not in value and ".." not in value and "?" not in value
        assert value == value.strip() and value.isascii() and value.lower() == value
        assert len(value) <= 63  # an empty value is an absent label


def scale(**params: object) -> k8s.ScaleParams:
    return k8s.ScaleParams.model_validate({"namespace": "shop", "name": "web", **params})


@pytest.mark.parametrize(
    ("current", "params", "want"),
    [
        (3, {"delta": 2, "max_replicas": 20}, 5),
        (19, {"delta": 2, "max_replicas": 20}, 20),  # a smaller step up, never past the bound
        (0, {"delta": 1, "min_replicas": 2}, 2),  # up to the floor: still upward
        (5, {"delta": -2, "min_replicas": 1}, 3),
        (2, {"delta": -2, "min_replicas": 1}, 1),
        (4, {"delta": 0}, 4),
        (40, {"replicas": 20, "max_replicas": 20}, 20),  # an exact count is what it says
    ],
)
def test_a_scale_step_moves_in_the_requested_direction(
    current: int, params: dict[str, int], want: int
) -> None:
    assert k8s.scale_to(current, scale(**params)) == want


@pytest.mark.parametrize(
    ("current", "params", "reason"),
    [
        # the shipped hpa-maxed-scale-up at 40 replicas: clamping would halve it
        (
            40,
            {"delta": 2, "max_replicas": 20},
            "40 replicas is at or above max_replicas 20: no step up by 2 within the bound",
        ),
        (
            20,
            {"delta": 2, "max_replicas": 20},
            "20 replicas is at or above max_replicas 20: no step up by 2 within the bound",
        ),
        (
            1,
            {"delta": -1, "min_replicas": 2},
            "1 replicas is at or below min_replicas 2: no step down by 1 within the bound",
        ),
        (
            2,
            {"delta": -3, "min_replicas": 2},
            "2 replicas is at or below min_replicas 2: no step down by 3 within the bound",
        ),
        (12, {"delta": 0}, "12 replicas is outside [0, 10] and a delta of 0 asks for no change"),
    ],
)
def test_a_step_the_bounds_make_impossible_is_refused(
    current: int, params: dict[str, int], reason: str
) -> None:
    assert k8s.scale_to(current, scale(**params)) == reason


@given(
    current=st.integers(0, 1000),
    delta=st.integers(-100, 100),
    bounds=st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(sorted),
)
def test_a_scale_step_never_moves_against_its_delta(
    current: int, delta: int, bounds: list[int]
) -> None:
    low, high = bounds
    want = k8s.scale_to(current, scale(delta=delta, min_replicas=low, max_replicas=high))
    if isinstance(want, int):
        assert low <= want <= high
        assert (want > current) if delta > 0 else (want < current) if delta < 0 else want == current
