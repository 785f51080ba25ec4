"""The machine a benchmark ran on: CPU model and its bf16 support, GPU, library versions.

`machine()` gives the fields (for the JSON) and `label`, the one line the table and the markdown
print, e.g. `2-core AMD EPYC 7B13 (AVX2, no native bf16), no GPU; torch 2.13.0, transformers
5.24.0, peft 0.21.2`. The CPU facts are runtime.precision's, the ones the precision policy uses.
"""

from __future__ import annotations

import os


def machine() -> dict:
    import peft
    import torch
    import transformers

    from tunesmith.runtime.precision import cpu_has_native_bf16, cpu_isa, cpu_model_name

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    gpu_bf16 = bool(gpu) and torch.cuda.is_bf16_supported()
    facts = {
        "cpu": cpu_model_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_isa": cpu_isa(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "gpu": gpu,
        "gpu_bf16": gpu_bf16,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    cpu = (
        f"{facts['cpu_cores']}-core {facts['cpu']} ({facts['cpu_isa']}, "
        f"{'native bf16' if facts['cpu_native_bf16'] else 'no native bf16'})"
    )
    where = f"{gpu} ({'bf16 supported' if gpu_bf16 else 'no bf16'})" if gpu else "no GPU"
    facts["label"] = (
        f"{cpu}, {where}; torch {facts['torch']}, transformers {facts['transformers']}, peft {facts['peft']}"
    )
    return facts
