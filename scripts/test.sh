#!/usr/bin/env bash
# Install and run the whole test suite (CPU, offline; slow-marked tests included).
#
#   bash scripts/test.sh [pytest args ...]     e.g. -m "not slow" for the quick subset
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
