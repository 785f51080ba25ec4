#!/usr/bin/env bash
# The GPU check in one call (issue 20 part 3; src/tunesmith/benchmark/gpu_check.py says what it runs).
# On the lent GPU machine (no network; torch, transformers, peft, accelerate installed there):
#
#   bash scripts/gpu_check.sh [--out gpu_check] [--only bench-135m,qlora] [--quick]
#
# It needs the SmolLM2 tokenizer in shared/gpu/tokenizer (write it here first, where the embedded
# default model is installed: .venv/bin/python -m tunesmith.benchmark.gpu_check --save-tokenizer
# shared/gpu/tokenizer), and, for the steps that use them, wheels carried in shared/gpu/wheels
# (trl is required; bitsandbytes, liger-kernel and deepspeed are optional: a step whose package is
# missing is recorded as skipped). Results: OUT/gpu_check.json and OUT/gpu_check.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G "shared/gpu/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install --quiet --no-index --no-deps shared/gpu/wheels/*.whl
fi
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PY" -m tunesmith.benchmark.gpu_check --tokenizer shared/gpu/tokenizer "$@"
