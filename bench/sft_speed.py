"""SFT training speed: tunesmith's defaults vs a plain transformers + PEFT baseline.

    python bench/sft_speed.py                                   # 2,000 rows, first 20 steps of 1,024 tokens
    python bench/sft_speed.py --rows 64 --val-rows 16           # reduced size (what CI runs)
    python bench/sft_speed.py --append docs/benchmarks.md       # record the table

The same as `tunesmith bench`; see src/tunesmith/benchmark/ for the job and what is measured.
"""

import sys

from tunesmith.benchmark.driver import main

if __name__ == "__main__":
    sys.exit(main())
