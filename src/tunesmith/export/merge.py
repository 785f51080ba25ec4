"""Which trained outputs can become plain weights, and why the others cannot.

- LoRA-family adapters (LoRA, rsLoRA, DoRA, PiSSA/OLoRA converted at save time) are folded into
  the base weights with PEFT's `merge_and_unload` (needs --merge, which says the base is copied).
- full and freeze outputs are already whole models; they are re-saved as they are.
- prompt/ptuning/prefix, bottleneck adapters and mixtures of LoRA experts cannot be merged (virtual
  tokens; a non-linearity inside the adapter; a router that picks experts per token): refused with
  the reason; their output folder is what chat/eval load.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ModelError


def check_mergeable(path: Path, kind: str | None, merge: bool) -> None:
    """Refuse outputs whose trained part cannot become plain weights, saying why."""
    if kind == "bottleneck":
        raise ModelError(
            f"{path}: bottleneck adapters cannot be merged into the base (the non-linearity between "
            "their down- and up-projection is not a linear map); load the output folder itself with "
            "tunesmith chat / eval"
        )
    if kind == "moe":
        raise ModelError(
            f"{path}: a mixture of LoRA experts cannot be merged into the base: its router picks "
            "different experts for each token (and with top_k == experts the gates still depend on the "
            "input), so no single weight matrix equals it; load the output folder itself with "
            "tunesmith chat / eval"
        )
    if kind not in (None, "lora"):
        raise ModelError(
            f"{path}: a {kind} adapter (virtual tokens) cannot be merged into the base weights; load the "
            "output folder itself with tunesmith chat / eval"
        )
    if kind == "lora" and not merge:
        raise ModelError(f"{path}: a LoRA adapter; pass --merge to fold it into a copy of the base weights")
