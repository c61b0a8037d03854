"""A detector kernel's cached code is valid for its whole package's sources.

numba keys a cache on the function's own file; the ensemble inlines the calibration, so
an edit of calibration.py alone left the cached ensemble running the old code.
"""

import os
import subprocess
import sys
from pathlib import Path

from detector.detectors._kernels import _cache
from detector.detectors._kernels import ensemble as ensemble_kernel
from detector.series import _index


def _package(tmp_path: Path) -> Path:
    for name, text in {"ensemble.py": "x = 1\n", "calibration.py": "y = 2\n"}.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "notes.txt").write_text("not a source")
    return tmp_path


def test_the_digest_changes_with_any_source_of_the_package_and_only_with_sources(tmp_path):
    package = _package(tmp_path)
    before = _cache.package_digest(str(package))
    os.utime(package / "calibration.py", (0, 0))  # times do not count: images keep few
    (package / "notes.txt").write_text("still not a source")
    assert _cache.package_digest(str(package)) == before
    (package / "calibration.py").write_text("y = 3\n")
    assert _cache.package_digest(str(package)) != before


def _locator(dispatcher: object) -> object:
    return dispatcher._cache._impl.locator  # type: ignore[attr-defined]


def test_the_detector_kernels_are_stamped_with_their_package_others_as_numba_does():
    locator = _locator(ensemble_kernel.ensemble_score_learn)
    assert isinstance(locator, _cache.PackageInTreeLocator | _cache.PackageUserProvidedLocator)
    _own, package = locator.get_source_stamp()
    assert package == _cache.DIGEST == _cache.package_digest()
    assert not isinstance(
        _locator(_index.lookup),
        _cache.PackageInTreeLocator | _cache.PackageUserProvidedLocator,
    )


def test_with_numba_cache_dir_the_cache_goes_there_with_the_same_stamp(tmp_path):
    code = (
        "from detector.detectors._kernels import ensemble, _cache\n"
        "loc = ensemble.ensemble_score_learn._cache._impl.locator\n"
        "print(type(loc).__name__, loc.get_cache_path(), loc.get_source_stamp()[1].hex())\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "PackageUserProvidedLocator"
    assert out[1].startswith(str(tmp_path))
    assert out[2] == _cache.DIGEST.hex()
