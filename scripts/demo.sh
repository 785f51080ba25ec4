#!/usr/bin/env bash
# The main job: install, fine-tune the embedded default model with LoRA on the Veltrano demo
# data, and print the base vs fine-tuned accuracy on held-out questions. Before training it prints
# the device, the precision chosen and why (`[tunesmith] device cpu (...): precision fp32 (auto)`),
# and after the first steps an estimate of the training time.
#
#   bash scripts/demo.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --core
exec .venv/bin/tunesmith train examples/demo_veltrano.yaml "$@"
