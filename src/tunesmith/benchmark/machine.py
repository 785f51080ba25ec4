"""One line describing the machine a benchmark ran on: CPU, GPU and library versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    import torch
    import transformers
    import peft

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()}-core {cpu}, {gpu}; torch {torch.__version__}, transformers "
            f"{transformers.__version__}, peft {peft.__version__}")
