"""Generated file trees: write them, and tell which files on disk are not what a generator
makes. Both generators (``deploy/cluster/generate.py``, ``deploy/charts/generate.py``) keep
their output as a mapping of relative path -> bytes, and own whole folders of it (a file
there that the generator no longer makes is stale too)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path


def write_tree(files: Mapping[str, bytes], out: Path, owned: Iterable[str]) -> None:
    """Replace the ``owned`` folders under ``out`` and write every file."""
    for folder in owned:
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def stale_paths(files: Mapping[str, bytes], out: Path, owned: Iterable[str]) -> list[str]:
    """Generated paths whose file under ``out`` differs, is missing or should not exist."""
    wrong = [
        rel
        for rel, content in files.items()
        if not (out / rel).is_file() or (out / rel).read_bytes() != content
    ]
    for folder in owned:
        if (out / folder).is_dir():
            wrong += [
                p.relative_to(out).as_posix()
                for p in sorted((out / folder).rglob("*"))
                if p.is_file() and p.relative_to(out).as_posix() not in files
            ]
    return sorted(wrong)
