#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): one call of at most 8 minutes on a machine with one CUDA GPU and only
# torch, transformers and safetensors installed. Run from anywhere; arguments go to gpu_check.py.
#
#   benchmarks/gpu_check.sh --prepare      # here, once: the wheels it may need and a built tinylm suite
#   benchmarks/gpu_check.sh                # on the GPU machine (carry benchmarks/.wheels and benchmarks/.cache/suites)
#   benchmarks/gpu_check.sh --device cpu --size quick   # try it on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=benchmarks/.wheels

if [[ "${1:-}" == "--prepare" ]]; then
  # pydantic and httpx (mergefront's light surface imports them) for the Python versions a GPU machine may have
  for version in 3.10 3.11 3.12 3.13; do
    "$PY" -m pip download --quiet --only-binary=:all: --platform manylinux2014_x86_64 --python-version "$version" \
      --dest "$WHEELS" pydantic httpx
  done
  PYTHONPATH="$PWD" "$PY" -c "
from pathlib import Path
from mergefront.evaluators.suites.tinylm import ensure_built
print(ensure_built(Path('benchmarks/.cache/suites'), verbose=False))"
  du -sh "$WHEELS" benchmarks/.cache/suites
  exit 0
fi

if ! "$PY" -c "import pydantic, httpx, yaml" 2>/dev/null; then
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" pydantic httpx pyyaml
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "$PY" benchmarks/gpu_check.py "$@"
