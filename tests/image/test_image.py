"""The container image, built for real from the Containerfile and run (issue 13).

buildah builds the Containerfile on a debootstrap'd bookworm with Debian's python3
(conftest.py) and runs the programs inside the result with chroot isolation, which shares
the host's network: ``serve`` listens on a free port of 127.0.0.1 and /readyz is polled
from here. The detector starts from an empty volume at NUMBA_CACHE_DIR, as a new pod
does, and must be ready from the kernels compiled at build time, compiling none.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicekit.version import __version__
from tests.conftest import ROOT
from tests.image.conftest import BUILDAH, Measured, buildah
from tests.integration.procs import http_ok, wait_until

# the first tests carry the base (debootstrap, ~2 min once) and the build (~1.5 min)
pytestmark = [pytest.mark.image, pytest.mark.timeout(1200)]

UID = 10001
# measured 2.2 s here, and 15 s when the kernels compile at start; a busy machine
# stretches both, so the cache comparison below is what tells them apart
READY_WITHIN_S = 20.0
MAX_PUSHED_MB = 400  # what a node pulls: compressed layers, base included
MAX_UNPACKED_MB = 650  # on disk once pulled; a compiler or the test extras would pass it
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = __version__  # pyproject.toml reads it from servicekit/version.py


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    """One working container of the image; every command below runs in it."""
    ctr = buildah("from", "--quiet", image).strip()
    yield ctr
    buildah("rm", ctr)


def run(ctr: str, *argv: str, volumes: tuple[str, ...] = (), timeout: float = 120) -> str:
    flags = [f"--volume={v}" for v in volumes]
    return buildah("run", "--isolation", "chroot", *flags, ctr, "--", *argv, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_until_ready(
    ctr: str, argv: list[str], port: int, log: Path, volumes: tuple[str, ...] = ()
) -> float:
    """Start ``serve`` in the container, poll /readyz, stop it; seconds until ready."""
    flags = [f"--volume={v}" for v in volumes]
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*BUILDAH, "run", "--isolation", "chroot", *flags, ctr, "--", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{argv[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        return http_ok(f"http://127.0.0.1:{port}/readyz")

    try:
        try:
            wait_until(f"{argv[0]} /readyz", ready, timeout_s=2 * READY_WITHIN_S, log=log)
        except TimeoutError as exc:
            pytest.fail(str(exc))
        return time.monotonic() - started
    finally:
        # buildah, buildah-chroot-exec and the program share the session started above
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def test_build_context_is_only_what_the_image_is_built_from(
    base_image: str, tmp_path: Path
) -> None:
    """.containerignore (buildah, podman) and .dockerignore (docker) agree and keep the
    tests, benches, data, .venv, .git and every cache out of the context."""
    ignore = (ROOT / ".containerignore").read_text()
    assert (ROOT / ".dockerignore").read_text() == ignore
    probe = tmp_path / "Containerfile"
    probe.write_text("FROM scratch\nCOPY . /context\n")
    name = "localhost/vigil-test:context"
    buildah("build", "--quiet", "-f", str(probe), "-t", name, str(ROOT))
    ctr = buildah("from", "--quiet", name).strip()
    try:
        root = Path(buildah("mount", ctr).strip()) / "context"
        files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    finally:
        buildah("rm", ctr)
        buildah("rmi", name)
    assert {f.split("/")[0] for f in files} == {
        "pyproject.toml",
        "README.md",
        "detector",
        "remediator",
        "servicekit",
        "playbooks",
        "deploy",
    }
    assert [f for f in files if f.startswith("deploy/")] == ["deploy/image/vigil-detector"]
    assert not [f for f in files if "__pycache__" in f or re.search(r"\.(pyc|nbi|nbc)$", f)]
    assert "detector/app.py" in files and "playbooks/node-drain.yaml" in files


def test_containerfile_defaults() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", text, re.M)
    assert not re.search(r"^HEALTHCHECK", text, re.M)
    # the default command listens on 0.0.0.0, so it needs the token (fail closed)
    assert re.search(r'^CMD \["vigil-detector", "serve", "--listen", "0\.0\.0\.0:9420"', text, re.M)
    assert "VIGIL_DETECTOR_TOKEN" in text


def test_image_metadata(image: str) -> None:
    info = json.loads(buildah("inspect", "--type", "image", image))
    config = info["OCIv1"]["config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["license"]["text"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert config["User"] == f"{UID}:{UID}"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["NUMBA_CACHE_DIR"] == "/var/cache/numba"
    assert env["PATH"].startswith("/opt/vigil/bin:/opt/vigil/venv/bin:/")
    assert "Healthcheck" not in config


def test_both_programs_run_as_the_fixed_non_root_user_without_a_compiler(container: str) -> None:
    assert run(container, "id", "-u").strip() == str(UID)
    assert "usage: vigil-detector" in run(container, "vigil-detector", "--help")
    checked = run(container, "vigil-remediator", "check", "/app/playbooks")
    shipped = sorted(p.name for p in (ROOT / "playbooks").glob("*.yaml"))
    assert sorted(re.findall(r"/app/playbooks/(\S+\.yaml): ok", checked)) == shipped
    # the runtime stage: no compiler, no pip, and nothing of the sources but the wheel's
    found = run(
        container,
        "sh",
        "-c",
        "for t in cc gcc c++ ld pip pip3; do command -v $t; "
        "done; ls -d /src /wheels /app/tests 2>/dev/null; true",
    )
    assert found.strip() == ""
    # the read-only root: the code is root's, only the volume paths are the user's
    owned = run(container, "sh", "-c", f"find / -xdev -user {UID} -prune 2>/dev/null; true")
    assert sorted(owned.split()) == [
        "/var/cache/numba",
        "/var/lib/vigil",
        "/var/lib/vigil-remediator",
    ]


def test_detector_is_ready_from_the_kernels_compiled_at_build_time(
    container: str, tmp_path: Path, measured: Measured
) -> None:
    """An empty volume at NUMBA_CACHE_DIR, as in a new pod: seeded, nothing compiled."""
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    os.chown(cache, UID, UID)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)
    port = free_port()
    ready = serve_until_ready(
        container,
        [
            "vigil-detector",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            "/var/lib/vigil",
        ],
        port,
        tmp_path / "detector.log",
        volumes=(f"{cache}:/var/cache/numba", f"{state}:/var/lib/vigil"),
    )
    measured.values["detector_ready_seconds"] = round(ready, 1)
    assert ready < READY_WITHIN_S, f"/readyz took {ready:.1f} s"
    baked = run(
        container, "sh", "-c", "cd /opt/vigil/numba-cache && find . -type f | sort | xargs md5sum"
    )
    assert baked.count(".nbi") >= 10, baked
    after = subprocess.run(
        "find . -type f | sort | xargs md5sum",
        shell=True,
        cwd=cache,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # a kernel compiled at start would add files or rewrite an index
    assert after == baked


def test_remediator_is_ready(container: str, tmp_path: Path, measured: Measured) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)
    port = free_port()
    ready = serve_until_ready(
        container,
        [
            "vigil-remediator",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--playbooks",
            "/app/playbooks",
            "--state-dir",
            "/var/lib/vigil-remediator",
        ],
        port,
        tmp_path / "remediator.log",
        volumes=(f"{state}:/var/lib/vigil-remediator",),
    )
    measured.values["remediator_ready_seconds"] = round(ready, 1)
    assert (state / "audit.db").exists()


def test_image_size(
    image: str, container: str, base_image: str, tmp_path: Path, measured: Measured
) -> None:
    archive = tmp_path / "image.tar"
    buildah("push", "--quiet", image, f"oci-archive:{archive}", timeout=600)
    with tarfile.open(archive) as tar:

        def member(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None, name
            return f.read()

        index = json.loads(member("index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads(member(f"blobs/sha256/{digest}"))
    layers = [int(layer["size"]) for layer in manifest["layers"]]
    pushed_mb = sum(layers) / 1e6
    mount = buildah("mount", container).strip()
    try:
        unpacked_mb = (
            int(
                subprocess.run(
                    ["du", "-sbx", mount], capture_output=True, text=True, check=True
                ).stdout.split()[0]
            )
            / 1e6
        )
    finally:
        buildah("umount", container)
    measured.values.update(
        pushed_mb=round(pushed_mb),
        unpacked_mb=round(unpacked_mb),
        pushed_vigil_layer_mb=round(layers[-1] / 1e6),
    )
    assert len(layers) == 2, "one layer on top of the base"
    assert pushed_mb < MAX_PUSHED_MB
    assert unpacked_mb < MAX_UNPACKED_MB
