"""buildah, a cached bookworm base image, and the Containerfile built on it.

No Docker engine runs here and no registry image can be pulled, so the base is made
locally: debootstrap's bookworm with Debian's python3 (the python image's role), slimmed
the way Debian's slim images are, stored as a tarball and as a local image. Both are
kept between runs in ``VIGIL_IMAGE_CACHE`` (default /var/cache/vigil-image), keyed by the
recipe below; change the recipe or delete the directory to make a fresh one. Every run
builds the Containerfile anew under a unique tag and removes that image and its
containers afterwards, plus what an interrupted run left, so buildah's vfs storage (a
full copy of the filesystem per layer and per container) does not grow across runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

CACHE = Path(os.environ.get("VIGIL_IMAGE_CACHE", "/var/cache/vigil-image"))
STORAGE = Path("/var/lib/containers/storage")
# peak use: the base, the builder's container (~1.2 GB), the image (~0.7 GB), one
# container of it (~0.6 GB) and the pushed archive (~0.2 GB); vfs copies, it never shares
MIN_FREE_GIB = 6.0
BUILDAH = ("buildah", "--storage-driver", "vfs")
BASE_REPO = "localhost/vigil-test-base"
IMAGE_REPO = "localhost/vigil-test"
MIRROR = os.environ.get("VIGIL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# what debian:bookworm-slim leaves out, as dpkg excludes so later installs leave it out too
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
"""
RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3"],
    "mirror": MIRROR,
    "dpkg": SLIM_DPKG,
    "env": "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
BASE_KEY = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
# the host's trust store, handed to pip in the build as a secret (a TLS-intercepting
# proxy's CA reaches pip that way; nothing of it lands in the image)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def buildah(*args: str, timeout: float = 120) -> str:
    done = subprocess.run([*BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"buildah {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def _names(kind: str) -> list[tuple[str, str]]:
    """(id, name) of buildah's images or working containers."""
    if kind == "images":
        rows = json.loads(buildah("images", "--json") or "null") or []
        return [(r["id"], n) for r in rows for n in r.get("names") or ()]
    rows = json.loads(buildah("containers", "--json") or "null") or []
    return [(r["id"], r["imagename"]) for r in rows]


def _remove_leftovers(keep_base: str) -> None:
    """Containers and images of earlier runs: test images, bases of other recipes."""
    doomed = {
        i
        for i, n in _names("images")
        if n.startswith(IMAGE_REPO + ":") or (n.startswith(BASE_REPO + ":") and n != keep_base)
    }
    doomed_names = {n for i, n in _names("images") if i in doomed}
    for cid, image in _names("containers"):
        if image in doomed_names or image.startswith(IMAGE_REPO + ":"):
            buildah("rm", cid)
    for image_id in doomed:
        buildah("rmi", "-f", image_id)


def _free_gib(path: Path) -> float:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


@dataclass
class Measured:
    """What the README reports, printed after the run and kept in CACHE/last-run.json."""

    values: dict[str, object] = field(default_factory=dict)


MEASURED = pytest.StashKey[Measured]()


@pytest.fixture(scope="session")
def measured(request: pytest.FixtureRequest) -> Iterator[Measured]:
    m = request.config.stash.setdefault(MEASURED, Measured())
    yield m
    if m.values:
        (CACHE / "last-run.json").write_text(json.dumps(m.values, indent=2) + "\n")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    m = config.stash.get(MEASURED, None)
    if m is not None and m.values:
        terminalreporter.section("container image (tests/image)")
        for key, value in m.values.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="session")
def buildah_ready() -> None:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: `make debs` installs them "
            "(apt-get install buildah debootstrap)"
        )
    for path in (STORAGE, CACHE, Path(tempfile.gettempdir()), Path("/var/tmp")):
        free = _free_gib(path)
        if free < MIN_FREE_GIB:
            pytest.fail(
                f"image build needs {MIN_FREE_GIB:.0f} GiB free on the filesystem of "
                f"{path}, it has {free:.1f} GiB: free space there (buildah storage "
                f"{STORAGE}, base cache {CACHE}) and run the suite again"
            )


def _debootstrap(tarball: Path) -> None:
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        done = subprocess.run(
            [
                "debootstrap",
                f"--variant={RECIPE['variant']}",
                f"--include={','.join(RECIPE['include'])}",
                str(RECIPE["suite"]),
                str(rootfs),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-3000:]}{done.stderr}"
        (rootfs / "etc/dpkg/dpkg.cfg.d/01-slim").write_text(SLIM_DPKG)
        for pattern in (
            "var/cache/apt/archives/*.deb",
            "var/cache/apt/*.bin",
            "var/lib/apt/lists/*",
            "usr/share/man/*",
            "usr/share/info/*",
            "usr/share/groff/*",
            "usr/share/lintian/*",
        ):
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for path in (rootfs / "usr/share/doc").rglob("*"):
            if path.is_file() and path.name != "copyright":
                path.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            check=True,
            timeout=300,
        )
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(buildah_ready: None, measured: Measured) -> str:
    """localhost/vigil-test-base:<recipe key>, made once per recipe."""
    name = f"{BASE_REPO}:{BASE_KEY}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _remove_leftovers(keep_base=name)
        if name in {n for _, n in _names("images")}:
            measured.values["base"] = f"{name} (cached image)"
            return name
        tarball = CACHE / f"bookworm-{BASE_KEY}.tar"
        started = time.monotonic()
        source = "cached rootfs"
        if not tarball.exists():
            _debootstrap(tarball)
            source = "debootstrap"
        ctr = buildah("from", "--quiet", "scratch").strip()
        try:
            buildah("add", ctr, str(tarball), "/", timeout=300)
            buildah("config", "--env", str(RECIPE["env"]), "--cmd", "python3", ctr)
            buildah("commit", "--quiet", "--rm", ctr, name, timeout=300)
        except BaseException:
            subprocess.run([*BUILDAH, "rm", ctr], capture_output=True)
            raise
        measured.values["base"] = f"{name} ({source}, {time.monotonic() - started:.0f} s)"
        return name


@pytest.fixture(scope="session")
def image(base_image: str, measured: Measured) -> Iterator[str]:
    """The Containerfile built on the base; removed with its containers afterwards."""
    name = f"{IMAGE_REPO}:{uuid.uuid4().hex[:12]}"
    secret = ["--secret", f"id=ca-bundle,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
    started = time.monotonic()
    try:
        buildah(
            "build",
            "--isolation",
            "chroot",
            "--quiet",
            "-f",
            str(ROOT / "Containerfile"),
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            *secret,
            "-t",
            name,
            str(ROOT),
            timeout=1500,
        )
        measured.values["build_seconds"] = round(time.monotonic() - started)
        yield name
    finally:
        for cid, image_name in _names("containers"):
            if image_name == name:
                buildah("rm", cid)
        if name in {n for _, n in _names("images")}:
            buildah("rmi", "-f", name)
