"""The API process, the SDK and the CLI start without importing the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "botorch", "pymoo", "transformers", "mergefront.optimizers", "mergefront.evaluators")


def _loaded(modules: str) -> list[str]:
    code = f"import sys, {modules}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [m for m in out.strip().split(",") if m]


def test_api_app_imports_no_heavy_library() -> None:
    assert _loaded("mergefront.service.app") == []


def test_sdk_and_cli_import_no_heavy_library() -> None:
    assert _loaded("mergefront, mergefront.cli, mergefront.client") == []
