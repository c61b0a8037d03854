"""``KINDS``: detector ``kind`` (as written in the config) -> family class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.config import DetectorParams
from detector.detectors.base import Family
from detector.detectors.ensemble import EnsembleFamily
from detector.detectors.robust import RobustFamily
from detector.detectors.spot import SpotFamily

KINDS: Mapping[str, Any] = {"robust": RobustFamily, "ensemble": EnsembleFamily, "spot": SpotFamily}


def build_family(params: DetectorParams, capacity: int = 1024) -> Family:
    family: Family = KINDS[params.kind](params, capacity)
    return family
