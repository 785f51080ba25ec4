"""Write a standalone transformers model folder from a tunesmith output.

    tunesmith export out/sft_lora_demo --out out/sft_lora_merged --merge

- LoRA-family adapters (LoRA, rsLoRA, DoRA, PiSSA/OLoRA converted at save time) are folded into
  the base weights with PEFT's `merge_and_unload` (needs --merge, which says the base is copied).
- full and freeze outputs are already whole models; they are re-saved as they are.
- prompt/ptuning/prefix, bottleneck adapters and mixtures of LoRA experts cannot be merged (virtual
  tokens; a non-linearity inside the adapter; a router that picks experts per token): refused with
  the reason; their output folder is what chat/eval load.
The folder gets safetensors weights, the tokenizer with its chat template, and a manifest; it is
written to DIR.partial and renamed when complete (runtime.outputs.OutputFolder), so a crash never
leaves a folder that looks finished.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ModelError
from tunesmith.layout import RUN_MANIFEST, trained_part
from tunesmith.methods.load import load_for_inference
from tunesmith.models.loader import resolve_model_path
from tunesmith.runtime.outputs import OutputFolder


def export_model(source: str, out: str, merge: bool = False, cache_dir: str | None = None,
                 overwrite: bool = False) -> Path:
    path = Path(resolve_model_path(source, cache_dir))
    kind = trained_part(path)
    if kind == "bottleneck":
        raise ModelError(f"{path}: bottleneck adapters cannot be merged into the base (the non-linearity between "
                         "their down- and up-projection is not a linear map); load the output folder itself with "
                         "tunesmith chat / eval")
    if kind == "moe":
        raise ModelError(f"{path}: a mixture of LoRA experts cannot be merged into the base: its router picks "
                         "different experts for each token (and with top_k == experts the gates still depend on the "
                         "input), so no single weight matrix equals it; load the output folder itself with "
                         "tunesmith chat / eval")
    if kind not in (None, "lora"):
        raise ModelError(f"{path}: a {kind} adapter (virtual tokens) cannot be merged into the base weights; load the "
                         "output folder itself with tunesmith chat / eval")
    if kind == "lora" and not merge:
        raise ModelError(f"{path}: a LoRA adapter; pass --merge to fold it into a copy of the base weights")

    output = OutputFolder(out, overwrite, protect=[str(path)])  # never replaces the model it reads
    loaded = load_for_inference(str(path), cache_dir, merge=True)
    work = output.open()
    loaded.model.save_pretrained(work)
    loaded.tokenizer.save_pretrained(work)
    source_manifest = loaded.manifest if (path / RUN_MANIFEST).is_file() else {}
    manifest = {**source_manifest, "exported_from": str(path), "merged_adapter": kind == "lora",
                "format": "transformers-safetensors"}
    return output.commit(manifest)
