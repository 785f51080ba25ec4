#!/usr/bin/env bash
# The main job: install, fine-tune the embedded default model with LoRA on the Veltrano demo
# data, and print the base vs fine-tuned accuracy on held-out questions.
#
#   bash scripts/demo.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tunesmith train examples/demo_veltrano.yaml "$@"
