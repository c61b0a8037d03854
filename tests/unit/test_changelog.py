"""CHANGELOG.md keeps its form: Keep a Changelog sections, an Unreleased section on top,
and every release saying whether upgrading to it resets what the detectors learned."""

import re
from pathlib import Path

from servicekit.version import __version__

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def _releases() -> list[tuple[str, str]]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    parts = re.split(r"^## \[([^\]]+)\]\s*$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_unreleased_comes_first_and_releases_descend_below_the_current_version():
    names = [name for name, _ in _releases()]
    assert names[0] == "Unreleased"
    versions = [tuple(int(x) for x in name.split(".")) for name in names[1:]]
    assert versions == sorted(versions, reverse=True)
    release = re.match(r"(\d+)\.(\d+)\.(\d+)", __version__)
    assert release is not None, __version__
    current = tuple(int(x) for x in release.groups())
    assert all(v < current for v in versions)


def test_every_release_says_whether_learning_resets_and_uses_the_standard_kinds():
    for name, body in _releases():
        assert re.search(r"^Learning: ", body, flags=re.M), f"{name}: no Learning: line"
        kinds = set(re.findall(r"^### (\w+)", body, flags=re.M))
        assert kinds <= KINDS, f"{name}: {kinds - KINDS}"
