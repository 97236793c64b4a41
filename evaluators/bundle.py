"""Files that travel with a job to nodes that lack them: a built suite, the modules of the job's own functions.

A bundle is the files' bytes keyed by their path relative to the folder above each packed path, so a package
`mymod/` arrives as `mymod/...` and a suite folder `digits-v1-seed0/` as itself. A node writes a bundle once into
its own cache, in a folder named by the bundle's digest, so a copy is never mistaken for another version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mergefront.evaluators.suites.cache import MANIFEST, ensure_built

SKIPPED = ("__pycache__", ".pyc")


@dataclass(frozen=True)
class Bundle:
    name: str
    files: Mapping[str, bytes]  # relative path -> content

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return h.hexdigest()[:16]


def pack(name: str, *paths: Path) -> Bundle:
    """The files and folders `paths` (folders whole, but for byte code) as one bundle."""
    files: dict[str, bytes] = {}
    for path in paths:
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in found:
            if file.is_file() and not any(part.endswith(SKIPPED) for part in file.parts):
                files[str(file.relative_to(path.parent))] = file.read_bytes()
    return Bundle(name, files)


def unpack(bundle: Bundle, root: Path) -> Path:
    """The folder under `root` holding `bundle`'s files, written first (once, across processes) unless there."""

    def write(folder: Path) -> None:
        for name, content in bundle.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        (folder / MANIFEST).write_text(json.dumps({"bundle": bundle.name, "digest": bundle.digest}) + "\n")

    return ensure_built(root / f"{bundle.name}-{bundle.digest}", write)
