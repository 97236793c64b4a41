"""Building a suite into the shared cache exactly once, safely across processes."""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "manifest.json"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, first running `build(folder)` if it has no ``manifest.json``.

    Safe across processes: builders serialize on a lock file beside the directory, build into a temporary
    directory and move it into place, so readers never see a partial suite.
    """
    if (target / MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f"{target.name}.lock"):
        if (target / MANIFEST).is_file():  # another process finished while we waited
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        scratch.chmod(0o755)  # mkdtemp makes it private; the cache is shared with workers
        try:
            build(scratch)
            if target.exists():  # a partial directory left by someone else's crash
                shutil.rmtree(target)
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


@contextmanager
def build_progress(suite: str, total: int, *, verbose: bool) -> Iterator[Callable[[], None]]:
    """Say on stderr that `suite` is being built and show a bar over its `total` training steps; yields the call
    that counts one step (a no-op when not `verbose`). A build prints nothing else until it is done, and tinylm's
    takes minutes."""
    if not verbose:
        yield lambda: None
        return
    from tqdm import tqdm

    print(f"building bench://{suite} (once: later jobs read it from the cache)", file=sys.stderr, flush=True)
    with tqdm(total=total, desc=f"bench://{suite} training", unit="step", file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def build_command(suite: str, build: Callable[[Path, int], None], argv: Sequence[str] | None = None) -> int:
    """`python -m mergefront.evaluators.suites.SUITE OUT_DIR [--seed N]`: build a suite into a folder."""
    parser = argparse.ArgumentParser(prog=f"python -m mergefront.evaluators.suites.{suite}",
                                     description=f"Build bench://{suite}.")
    parser.add_argument("out_dir", type=Path, help="directory to write the suite into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.out_dir, args.seed)
    print(f"written to {args.out_dir}")
    return 0
