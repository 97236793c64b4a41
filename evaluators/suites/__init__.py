"""Built-in benchmark suites: small real models trained here, cached on disk."""

from __future__ import annotations

from pathlib import Path


def ensure_suite(name: str, cache_root: Path, seed: int = 0, *, verbose: bool = True) -> Path:
    """Build the named suite into `cache_root` unless it is cached; return its folder."""
    if name == "digits":
        from evaluators.suites import digits

        return digits.ensure_built(cache_root, seed, verbose=verbose)
    raise ValueError(f"unknown built-in suite {name!r}")
