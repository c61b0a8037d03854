"""The console's shared assets are identical copies in both packages (which never import
each other), like yamlsrc.py; and both packages ship them as package data."""

import tomllib

from tests.conftest import ROOT


def test_shared_console_assets_are_identical():
    for name in ("console.css", "dom.js", "favicon.svg"):
        detector = (ROOT / "detector" / "console" / name).read_bytes()
        remediator = (ROOT / "remediator" / "console" / name).read_bytes()
        assert detector == remediator, f"{name} differs between the two consoles"


def test_console_assets_are_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = data["tool"]["setuptools"]["package-data"]
    assert "console/*" in package_data["detector"]
    assert "console/*" in package_data["remediator"]
