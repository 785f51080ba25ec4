#!/usr/bin/env bash
# The GPU check in one call (scripts/gpu_check.py says what it runs).
# On the lent GPU machine (no network; torch, transformers, peft, accelerate installed there):
#
#   bash scripts/gpu_check.sh [--out gpu_check] [--only bench-135m,qlora] [--quick]
#
# It needs the SmolLM2 tokenizer in shared/gpu/tokenizer (write it here first, where the embedded
# default model is installed: PYTHONPATH=src .venv/bin/python scripts/gpu_check.py --save-tokenizer
# shared/gpu/tokenizer), and, for the steps that use them, wheels carried in shared/gpu/wheels
# (trl is required; bitsandbytes (43 MB, for qlora and export-bnb4), liger-kernel and deepspeed are
# optional: a step whose package is missing is recorded as skipped; llmcompressor + compressed-tensors
# + auto-round for export-gptq4/awq4 run only where the machine's transformers is 5.15-5.17). vLLM's wheel (438 MB for 0.11)
# is far past the 64 MiB a device call carries, so the `vllm` step runs only on a GPU machine that
# has vllm installed. The bench steps and fsdp are required: the check exits 1 when one of them fails or
# does not run, and its summary counts the steps passed, skipped (with the reason) and failed.
# Results: OUT/gpu_check.json and OUT/gpu_check.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G "shared/gpu/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install --quiet --no-index --no-deps shared/gpu/wheels/*.whl
fi
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PY" scripts/gpu_check.py --tokenizer shared/gpu/tokenizer "$@"
