#!/usr/bin/env bash
# Install and run the whole test suite (CPU, offline; slow-marked tests included):
#   0. ruff check and ruff format --check (seconds): a failure stops here;
#   1. every test on this CPU as it is, the fast tier first (neither `trains` nor `slow`: config,
#      data, errors, serving logic; a few minutes; a failure stops here), then the tests that train,
#      sample or run the embedded model (`trains or slow`);
#   2. the tests that train or sample (marked `trains`) again, with the CPU restricted to AVX2
#      (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): what a user with an AVX2-only CPU gets
#      (other kernels, other rounding, and `mixed_precision: auto` = fp32 instead of bf16);
#   3. tests/export/test_export_gptq.py in .venv-gptq (tunesmith with llm-compressor, which pins an older
#      transformers; made by `scripts/setup.sh --gptq`): the GPTQ exports themselves.
# Each pass prints its 20 slowest tests. On an AVX2-only CPU the second pass repeats the first's runs.
#
#   bash scripts/test.sh [pytest args ...]     args go to every pass; a `-m EXPR` is combined with
#                                              each pass's own selection, e.g. `trains and (EXPR)`
#   bash scripts/test.sh -m "not slow"         the quick subset
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] lint: ruff check, ruff format --check"
.venv/bin/ruff check src tests scripts bench
.venv/bin/ruff format --check --quiet src tests scripts bench
expr=""
rest=()
for ((i = 1; i <= $#; i++)); do
  if [[ ${!i} == -m ]]; then
    i=$((i + 1))
    expr=${!i}
  else
    rest+=("${!i}")
  fi
done
selection() { if [[ -n $expr ]]; then echo "($1) and ($expr)"; else echo "$1"; fi; }
minutes() { echo "$(($1 / 60)) min $(($1 % 60)) s"; }
run_pytest() { .venv/bin/python -m pytest -q --durations=20 -m "$1" ${rest[@]+"${rest[@]}"}; }
no_tests_ok() { [[ $1 == 0 || $1 == 5 ]]; }  # 5: the selection matched no test

echo "[test] pass 1/3, fast tier: tests that neither train nor run the embedded model, on this CPU (torch uses $(.venv/bin/python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))"
start=$SECONDS
fast=0
run_pytest "$(selection "not trains and not slow")" || fast=$?
fast_s=$((SECONDS - start))
if ! no_tests_ok $fast; then
  echo "[test] the fast tier failed (exit $fast, $(minutes $fast_s)); the long passes were not run"
  exit 1
fi
echo "[test] pass 1/3, the rest: tests that train, sample or run the embedded model, on this CPU"
start=$SECONDS
first=0
run_pytest "$(selection "trains or slow")" || first=$?
first_s=$((SECONDS - start))
echo "[test] pass 2/3: tests marked \`trains\`, CPU restricted to AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)"
start=$SECONDS
second=0
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 run_pytest "$(selection trains)" || second=$?
second_s=$((SECONDS - start))
echo "[test] pass 3/3: GPTQ exports through llm-compressor, in .venv-gptq"
start=$SECONDS
third=0
bash scripts/setup.sh --gptq && .venv-gptq/bin/python -m pytest -q tests/export/test_export_gptq.py || third=$?
echo "[test] pass 1: fast tier exit $fast in $(minutes $fast_s), the rest exit $first in $(minutes $first_s);" \
  "pass 2 (AVX2): exit $second in $(minutes $second_s); pass 3 (gptq): exit $third in $(minutes $((SECONDS - start)))"
no_tests_ok $first && no_tests_ok $second && [[ $third == 0 ]]
