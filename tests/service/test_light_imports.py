"""The API process, the SDK and the CLI start without importing the heavy libraries."""

from __future__ import annotations

import ast
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


def test_the_server_imports_the_optimizers_as_it_starts_not_on_the_first_ask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys\nfrom fastapi.testclient import TestClient\nfrom mergefront.service.app import create_app\n"
            "from mergefront.service.settings import Settings\n"
            f"app = create_app(Settings(home={str(tmp_path)!r}), run_jobs=False)\n"
            f"before = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "with TestClient(app):\n"
            f"    print(before, sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    before, after = out.strip().split(" ", 1)
    assert before == "[]"  # creating the app imports nothing heavy; its start imports what asks and tells need
    assert {"botorch", "mergefront.optimizers", "pymoo", "torch"} <= set(ast.literal_eval(after))
