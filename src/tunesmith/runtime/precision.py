"""Precision policy: which autocast a run uses on this machine, why, and a warning where a choice is slow.

`training.mixed_precision: auto` picks bf16 only where it is native: a GPU that supports it, or an
x86 CPU with AVX512-BF16 or AMX whose use is not restricted by `ATEN_CPU_CAPABILITY` /
`ONEDNN_MAX_CPU_ISA` (the variables torch and oneDNN read to cap the instruction set). Everywhere
else bf16 and fp16 autocast are emulated on the CPU and far slower than fp32, so `auto` means fp32
there, and an explicit `bf16`/`fp16` on such a CPU gets a warning that says so and what to use.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass

import torch

log = logging.getLogger("tunesmith")

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA, or the older DNNL_MAX_CPU_ISA) that still allow native bf16.
# Lower ones (SSE41, AVX, AVX2, AVX2_VNNI*, AVX512_CORE, AVX512_CORE_VNNI) leave none.
_ONEDNN_BF16_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")

# How much slower bf16 / fp16 autocast ran than fp32 on a CPU without native support: CPU seconds per
# LoRA step of the embedded SmolLM2-135M (`python bench/precision_cpu.py --steps 1 --batch 2 --tokens 32
# --threads 1`; fp32 0.93 s, bf16 17.9 s, fp16 20.2 s), see docs/benchmarks.md. The main demo showed the
# same on such a CPU: 88-130 s per step with bf16 against 3-4 s with fp32 (docs/benchmarks.md).
EMULATED_SLOWDOWN = {"bf16": "19x", "fp16": "22x"}
EMULATED_MEASURED_ON = "AMD EPYC, AVX2 only, 2026-11-27"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            return set(next((line for line in handle if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_model_name() -> str:
    """The CPU's model name as the OS reports it (e.g. `AMD EPYC`, `Intel(R) Xeon(R) ...`)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def isa_restriction() -> str | None:
    """The environment variable that caps the CPU's instruction set below native bf16, if one does."""
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten and not aten.startswith("avx512"):
        return f"ATEN_CPU_CAPABILITY={aten}"
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(name, "").strip().upper()
        if cap and not cap.startswith(_ONEDNN_BF16_CAPS):
            return f"{name}={cap}"
    return None


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX (Linux), where bf16 autocast is faster than fp32,
    unless ATEN_CPU_CAPABILITY (anything but avx512*) or ONEDNN_MAX_CPU_ISA (below
    AVX512_CORE_BF16) restricts the instruction set: torch and oneDNN then run bf16 emulated."""
    flags = _cpu_flags()
    if not ("avx512_bf16" in flags or "amx_bf16" in flags):
        return False
    return isa_restriction() is None


def cpu_has_native_fp16() -> bool:
    """True on x86 CPUs with AVX512-FP16 or AMX-FP16 (Linux) whose instruction set is not restricted."""
    flags = _cpu_flags()
    if not ("avx512_fp16" in flags or "amx_fp16" in flags):
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return isa_restriction() is None and not cap.startswith("AVX512_CORE_BF16")


def cpu_isa() -> str:
    """The widest vector instruction set torch uses here, as a short label (AVX2, AVX512-BF16, ...)."""
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        label = "AMX"
    elif "avx512_bf16" in flags:
        label = "AVX512-BF16"
    elif "avx512f" in flags:
        label = "AVX512"
    elif "avx2" in flags:
        label = "AVX2"
    else:
        label = torch.backends.cpu.get_cpu_capability()
    restriction = isa_restriction()
    return f"{label}, restricted by {restriction}" if restriction else label


def resolve_precision(mixed_precision: str, dtype: torch.dtype) -> str:
    """'auto': the weights' own half type if they have one; on a CPU with native bf16, bf16
    autocast (measured 1.4x faster for SmolLM2-135M LoRA on a 2-core EPYC with AVX512-BF16); else
    none ("no", i.e. fp32)."""
    if mixed_precision != "auto":
        return mixed_precision
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16" if dtype == torch.bfloat16 else "fp16"
    if not torch.cuda.is_available() and cpu_has_native_bf16():
        return "bf16"
    return "no"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "no" (fp32), "bf16" or "fp16": what training_arguments passes on
    reason: str  # one line: device, CPU model, bf16 support, the choice and where it came from
    warning: str | None  # set where the choice is emulated and slow on this CPU


def choose_precision(mixed_precision: str, dtype: torch.dtype, device: torch.device) -> PrecisionChoice:
    """The precision a run uses, with the one-line reason printed at the start of training."""
    precision = resolve_precision(mixed_precision, dtype)
    shown = "fp32" if precision == "no" else precision
    if mixed_precision != "auto":
        source = f"training.mixed_precision={mixed_precision}"
    elif dtype in (torch.bfloat16, torch.float16):
        source = f"auto: the weights are {str(dtype).removeprefix('torch.')}"
    else:
        source = "auto"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        support = "bf16 supported" if torch.cuda.is_bf16_supported() else "no bf16"
        return PrecisionChoice(precision, f"device cuda ({name}, {support}): precision {shown} ({source})", None)
    native = cpu_has_native_bf16()
    native_half = {"bf16": native, "fp16": cpu_has_native_fp16(), "no": True}[precision]
    where = f"{cpu_model_name()}, {cpu_isa()}, {'native bf16' if native else 'no native bf16'}"
    reason = f"device {device.type} ({where}, {torch.get_num_threads()} threads): precision {shown} ({source})"
    warning = None
    if device.type == "cpu" and not native_half:
        key = "training.mixed_precision" if mixed_precision != "auto" else "model.dtype"
        warning = (
            f"{key}: {precision} on this CPU ({cpu_model_name()}, {cpu_isa()}) has no native {precision} "
            f"kernels, so autocast is emulated: a LoRA step of SmolLM2-135M took {EMULATED_SLOWDOWN[precision]} "
            f"the time of fp32 when measured ({EMULATED_MEASURED_ON}). Use training.mixed_precision=auto "
            f"(fp32 here, bf16 where it is native) or no"
            + (", and model.dtype=auto" if key == "model.dtype" else "")
            + "."
        )
    return PrecisionChoice(precision, reason, warning)


def announce_precision(mixed_precision: str, dtype: torch.dtype, device: torch.device) -> PrecisionChoice:
    """Print the reason line (and log the warning, if any) once, at the start of training."""
    choice = choose_precision(mixed_precision, dtype, device)
    print(f"[tunesmith] {choice.reason}", flush=True)
    if choice.warning:
        log.warning(choice.warning)
    return choice
