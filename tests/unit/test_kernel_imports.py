"""The numba kernels say "numpy and numba only" in their docstrings; this keeps it true.

A kernel module is any module of the project that imports numba. It may import numpy,
numba, math and other kernel modules (the shared ``SAFE_FASTMATH`` flags, the tail
functions), nothing else: no service code, no scipy, no I/O. Kernels then stay
compilable on their own, testable against the pure-Python references in
``tests/reference.py``, and cheap to import from a worker process.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"numpy", "numba", "math", "__future__"}
# the one module that reads files: where the detector kernels cache their code and the
# digest of their sources that keeps a cache from outliving a dependency's edit
CACHE_LOCATOR = ("detector.detectors._kernels._cache", {"hashlib", "os", "typing"})


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            out.add(node.module)
    return out


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _kernels() -> dict[str, Path]:
    return {
        _module(p): p
        for package in ("detector", "remediator", "servicekit")
        for p in (ROOT / package).rglob("*.py")
        if any(m == "numba" or m.startswith("numba.") for m in _imports(p))
    }


def test_kernels_import_numpy_numba_math_and_other_kernels_only() -> None:
    kernels = _kernels()
    assert "detector.detectors._kernels.ensemble" in kernels and len(kernels) >= 8
    packages = {name.rpartition(".")[0] for name in kernels}  # e.g. SAFE_FASTMATH's
    for name, path in sorted(kernels.items()):
        allowed = ALLOWED | (CACHE_LOCATOR[1] if name == CACHE_LOCATOR[0] else set())
        for module in sorted(_imports(path)):
            top = module.split(".")[0]
            assert top in allowed or module in kernels or module in packages, (
                f"{path.relative_to(ROOT)} (a numba kernel) imports {module}: kernels use "
                "numpy, numba and math only"
            )
