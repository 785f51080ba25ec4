#!/usr/bin/env bash
# Install and run the whole test suite (CPU, offline; slow-marked tests included), in two passes
# (after `ruff check`, where .venv has ruff):
#   1. every test, on this CPU as it is;
#   2. the tests that train or sample (marked `trains`) again, with the CPU restricted to AVX2
#      (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): what a user with an AVX2-only CPU gets
#      (other kernels, other rounding, and `mixed_precision: auto` = fp32 instead of bf16).
#   3. tests/export/test_export_gptq.py in .venv-gptq (tunesmith with llm-compressor, which pins an older
#      transformers; made by `scripts/setup.sh --gptq`): the GPTQ exports themselves.
# Each pass prints its 20 slowest tests. On an AVX2-only CPU the second pass repeats the first's runs.
#
#   bash scripts/test.sh [pytest args ...]     args go to both passes; a `-m EXPR` selects
#                                              EXPR in pass 1 and `trains and (EXPR)` in pass 2
#   bash scripts/test.sh -m "not slow"         the quick subset
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -x .venv/bin/ruff ]; then .venv/bin/ruff check src tests scripts || exit 1; fi
restricted=(-m trains)
rest=()
for ((i = 1; i <= $#; i++)); do
  if [[ ${!i} == -m ]]; then
    i=$((i + 1))
    restricted=(-m "trains and (${!i})")
  else
    rest+=("${!i}")
  fi
done
echo "[test] pass 1/2: the whole suite on this CPU (torch uses $(.venv/bin/python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))"
start=$SECONDS
first=0
.venv/bin/python -m pytest -q --durations=20 "$@" || first=$?
first_s=$((SECONDS - start))
echo "[test] pass 2/2: tests marked \`trains\`, CPU restricted to AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)"
start=$SECONDS
second=0
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
  .venv/bin/python -m pytest -q --durations=20 "${restricted[@]}" ${rest[@]+"${rest[@]}"} || second=$?
second_s=$((SECONDS - start))
echo "[test] pass 3: GPTQ exports through llm-compressor, in .venv-gptq"
start=$SECONDS
third=0
bash scripts/setup.sh --gptq && .venv-gptq/bin/python -m pytest -q tests/export/test_export_gptq.py || third=$?
echo "[test] pass 1: exit $first in $((first_s / 60)) min $((first_s % 60)) s; pass 2 (AVX2): exit $second in $((second_s / 60)) min $((second_s % 60)) s; pass 3 (gptq): exit $third in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
[[ $first == 0 && $second == 0 && $third == 0 ]]
