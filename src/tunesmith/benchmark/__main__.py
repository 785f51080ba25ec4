"""`python -m tunesmith.benchmark`: the same as `python bench/sft_speed.py`; also how the driver
starts each variant's own process (`--child VARIANT SPEC OUT`)."""

import sys

from tunesmith.benchmark.driver import main

if __name__ == "__main__":
    sys.exit(main())
