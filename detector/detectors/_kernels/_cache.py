"""Where the kernels of this package cache their compiled code, and when it is stale.

numba keys a function's cached code on its own source file only. The ensemble inlines
the calibration's functions and every family reads ``MAX_SCORED`` and ``SAFE_FASTMATH``
at compile time, so after an edit of ``calibration.py`` alone the cached ensemble kept
running the old calibration (it happened three times in one day). The locators below
are numba's own (``NUMBA_CACHE_DIR`` when set, else ``__pycache__``) with one change:
the stamp a cache is valid for also holds a digest of every source file of this package.
The digest is of contents, not times, so an image's baked cache stays valid wherever its
layers are unpacked. Only functions defined in this package use them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from numba.core import caching

HERE = os.path.dirname(os.path.abspath(__file__))


def package_digest(directory: str = HERE) -> bytes:
    """SHA-256 over the names and contents of the package's ``.py`` files, in order."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        if name.endswith(".py"):
            with open(os.path.join(directory, name), "rb") as source:
                digest.update(name.encode() + b"\0" + source.read() + b"\0")
    return digest.digest()


DIGEST = package_digest()


class _PackageStamp:
    """A locator mixin: for this package's functions only, valid for its whole source."""

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if os.path.dirname(os.path.abspath(py_file)) != HERE:
            return None
        return super().from_function(py_func, py_file)  # type: ignore[misc]

    def get_source_stamp(self) -> Any:
        return (super().get_source_stamp(), DIGEST)  # type: ignore[misc]


def _numba(*names: str) -> Any:
    """The first of ``names`` numba's caching module has (they lost a leading
    underscore between releases)."""
    for name in names:
        if hasattr(caching, name):
            return getattr(caching, name)
    raise ImportError(f"numba.core.caching has none of {names}")


_USER_PROVIDED = _numba("UserProvidedCacheLocator", "_UserProvidedCacheLocator")
_IN_TREE = _numba("InTreeCacheLocator", "_InTreeCacheLocator")


class PackageUserProvidedLocator(_PackageStamp, _USER_PROVIDED):  # type: ignore[misc,valid-type]
    """numba's NUMBA_CACHE_DIR locator, stamped with the package."""


class PackageInTreeLocator(_PackageStamp, _IN_TREE):  # type: ignore[misc,valid-type]
    """numba's ``__pycache__`` locator, stamped with the package."""


def install() -> None:
    """Put the package's locators first (once): numba asks each locator in turn."""
    locators: list[Any] = _numba("CacheImpl", "_CacheImpl")._locator_classes
    for locator in (PackageInTreeLocator, PackageUserProvidedLocator):
        if locator not in locators:
            locators.insert(0, locator)
