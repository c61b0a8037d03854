"""Hostile playbooks: 10^5 mutated YAML files give loaded playbooks or problems shaped
``file:line: path: message``, never an exception; alias bombs, deep nesting and control
characters are refused quickly and within a memory bound."""

from __future__ import annotations

import os
import random
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from servicekit import yamlsrc
from tests.property import hostile

N_INPUTS = int(os.environ.get("VIGIL_HOSTILE_INPUTS", "100000"))
REGISTRY = build_registry()


def _run_share(seed: int, n: int) -> tuple[dict[str, int], str | None]:
    """One worker's share: outcomes, or the first unexpected answer as text."""
    target = hostile.PlaybookTarget(build_registry())
    try:
        for text in hostile.playbook_inputs(random.Random(seed), n):
            target(text)
    except hostile.UnexpectedError as exc:
        return target.outcomes, str(exc)
    finally:
        target.close()
    return target.outcomes, None


def test_mutated_playbooks_give_only_located_problems():
    """YAML parsing is pure Python (about 1 ms a file), so the inputs are shared among
    worker processes, one per CPU."""
    workers = max(1, min(4, os.cpu_count() or 1))
    shares = [N_INPUTS // workers + (k < N_INPUTS % workers) for k in range(workers)]
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_run_share, [20261127 + k for k in range(workers)], shares))
    failures = [failure for _, failure in results if failure is not None]
    assert not failures, failures[0]
    outcomes: dict[str, int] = {}
    for got, _ in results:
        for key, count in got.items():
            outcomes[key] = outcomes.get(key, 0) + count
    assert sum(outcomes.values()) == N_INPUTS
    assert outcomes["loaded"] > N_INPUTS // 100, outcomes  # mutations that stay valid
    assert outcomes["problems"] > N_INPUTS // 2, outcomes


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "apiVersion",
                    "kind",
                    "metadata",
                    "name",
                    "spec",
                    "match",
                    "steps",
                    "action",
                    "params",
                    "mode",
                    "guards",
                    "undo",
                    "verify",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=16,
)


@given(documents)
def test_generated_documents_give_only_located_problems(doc):
    target = hostile.PlaybookTarget(REGISTRY)
    try:
        target(yaml.safe_dump(doc, allow_unicode=True))
    finally:
        target.close()


def _bomb(levels: int, width: int = 10) -> str:
    rows = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(rows) + f"\nspec: {{steps: *a{levels - 1}}}\n"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("billion-laughs", _bomb(9), "aliases make the document hold more than 100000 values"),
        ("recursive-alias", "spec: &a {steps: [*a]}\n", "deeper than 64 levels"),
        (
            "alias-chain",
            "a0: &a0 [1]\n"
            + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 80))
            + "spec: *a79\n",
            "deeper than 64 levels",
        ),
        ("deep-flow", "spec: " + "[" * 5000 + "]" * 5000 + "\n", "deeper than 64 levels"),
        ("deep-block", "".join("  " * i + f"k{i}:\n" for i in range(300)), "deeper than 64 levels"),
        (
            "control-character",
            "apiVersion: vigil/v1\nkind: Play\x04book\n",
            "unacceptable character #x0004",
        ),
    ],
)
def test_hostile_yaml_is_refused_quickly_with_a_located_problem(
    tmp_path: Path, name, text, message
):
    """Regression: these raised RecursionError or ReaderError out of the loader, or (the
    bomb) walked 10^9 values."""
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        catalog = load_catalog([path], REGISTRY)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # a hang guard, not a speed target (speed lives in bench/): walking the bomb's 10^9
    # values took hours; PyYAML's scanner alone needs ~1 s for 5000 brackets on a busy
    # 2-core machine under tracemalloc
    assert time.perf_counter() - t0 < 30.0
    assert peak < 64 << 20, peak
    assert not catalog.entries
    assert len(catalog.problems) == 1
    problem = catalog.problems[0]
    assert hostile.PROBLEM.match(problem), problem
    assert problem.startswith(f"{path}:") and message in problem, problem


def test_the_control_character_is_reported_on_its_line():
    with pytest.raises(yamlsrc.YamlSourceError) as info:
        yamlsrc.compose("a: 1\nb: 2\nc: x\x07\n", source="f.yaml")
    assert info.value.problems == [
        "f.yaml:3: (root): invalid YAML: unacceptable character #x0007: special characters "
        "are not allowed"
    ]


def test_anchors_within_the_bounds_still_load(tmp_path: Path):
    text = (hostile.ROOT / "tests/fixtures/playbooks/valid/notify-anomaly.yaml").read_text()
    first = "          Authorization: {secret: runbook-token}\n          X-Vigil"
    text = text.replace(first, first.replace("Authorization: ", "Authorization: &token "))
    text = text.replace(
        "          Authorization: {secret: runbook-token}\n", "          Authorization: *token\n"
    )
    assert text.count("*token") == 1
    path = tmp_path / "notify-anomaly.yaml"
    path.write_text(text)
    catalog = load_catalog([path], REGISTRY)
    assert catalog.ok, catalog.problems
    undo = catalog.entries[0].playbook.spec.undo
    assert isinstance(undo, tuple)
    assert undo[0].params["headers"] == {"Authorization": {"secret": "runbook-token"}}
