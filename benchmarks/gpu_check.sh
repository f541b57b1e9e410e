#!/usr/bin/env bash
# One short run of lookalike's GPU paths, one line per check (PASS / FAIL / SKIP); exit 1 on a FAIL.
# What it checks: benchmarks/gpu_check.py. Under 5 minutes on one GPU.
#
#   benchmarks/gpu_check.sh                                  # on a machine with a GPU
#   benchmarks/gpu_check.sh --device cpu --quick             # the dry run, anywhere
#
# PYTHON picks the interpreter (default: python3). Where that Python lacks some of lookalike's
# dependencies (a bare GPU image may have torch and timm but not pydantic or faiss-cpu), point
# LOOKALIKE_WHEELS at a folder of their wheels: they are installed into /tmp/lookalike-site first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -n "${LOOKALIKE_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/lookalike-site "$LOOKALIKE_WHEELS"/*.whl
  export PYTHONPATH=/tmp/lookalike-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
