"""Both packages ship their console as package data, and servicekit the assets the two
consoles share."""

import tomllib

from tests.conftest import ROOT


def test_console_assets_are_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = data["tool"]["setuptools"]["package-data"]
    assert "web/assets/*" in package_data["detector"]
    assert "console/*" in package_data["remediator"]
    assert "console/*" in package_data["servicekit"]
