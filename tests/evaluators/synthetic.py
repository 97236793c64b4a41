"""The synthetic Llama of benchmarks/ (`benchmarks/synthetic_llama.py`), importable from the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def synthetic_llama() -> ModuleType:
    """The benchmarks' module: `LlamaShape`, `SIZES`, `ensure_checkpoints`."""
    if "synthetic_llama" not in sys.modules:
        spec = importlib.util.spec_from_file_location("synthetic_llama", BENCHMARKS / "synthetic_llama.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["synthetic_llama"] = module
        spec.loader.exec_module(module)
    return sys.modules["synthetic_llama"]
