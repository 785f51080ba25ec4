"""Write a standalone model from a tunesmith output: a transformers folder or a GGUF file.

    tunesmith export out/sft_lora_demo --out out/sft_lora_merged --merge
    tunesmith export out/sft_lora_demo --out out/sft_lora_gguf --format gguf --quant q8_0

- LoRA-family adapters (LoRA, rsLoRA, DoRA, PiSSA/OLoRA converted at save time) are folded into
  the base weights with PEFT's `merge_and_unload` (needs --merge, which says the base is copied).
- full and freeze outputs are already whole models; they are re-saved as they are.
- prompt/ptuning/prefix, bottleneck adapters and mixtures of LoRA experts cannot be merged (virtual
  tokens; a non-linearity inside the adapter; a router that picks experts per token): refused with
  the reason; their output folder is what chat/eval load.
GGUF (export/gguf.py) always merges (a GGUF holds whole weights) and gets an Ollama Modelfile and a
check against the model it came from (export/check.py) in its manifest.
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
                 overwrite: bool = False, format: str = "transformers", quant: str = "f16",
                 gguf_pre: str | None = None) -> Path:
    """Export `source` as a transformers folder (`format="transformers"`) or a GGUF file with an
    Ollama Modelfile (`format="gguf"`, weights as `quant`), checked against the model it came from."""
    if format not in FORMATS:
        raise ModelError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    path = Path(resolve_model_path(source, cache_dir))
    kind = trained_part(path)
    check_mergeable(path, kind, merge or format == "gguf")
    output = OutputFolder(out, overwrite, protect=[str(path)])  # never replaces the model it reads
    loaded = load_for_inference(str(path), cache_dir, merge=True, dtype="float32" if format == "gguf" else "auto")
    if format == "gguf":  # refusals before anything is written
        from tunesmith.export.gguf import check_architecture, pretokenizer_name

        check_architecture(loaded.model.config)
        pretokenizer_name(loaded.tokenizer, gguf_pre)
    work = output.open()
    source_manifest = loaded.manifest if (path / RUN_MANIFEST).is_file() else {}
    manifest = {**source_manifest, "exported_from": str(path), "merged_adapter": kind == "lora"}
    if format == "gguf":
        from tunesmith.export.check import compare_gguf
        from tunesmith.export.gguf import write_gguf
        from tunesmith.export.ollama import modelfile

        name = f"model-{quant}.gguf"
        written = write_gguf(loaded.model, loaded.tokenizer, work / name, quant, Path(out).name, gguf_pre)
        (work / "Modelfile").write_text(modelfile(name, loaded.tokenizer, loaded.system), encoding="utf-8")
        check = compare_gguf(work / name, loaded.model, loaded.tokenizer, loaded.system)
        manifest.update({"format": "gguf", "gguf": {"file": name, **written}, "check": check})
    else:
        loaded.model.save_pretrained(work)
        loaded.tokenizer.save_pretrained(work)
        manifest["format"] = "transformers-safetensors"
    return output.commit(manifest)


FORMATS = ("transformers", "gguf")


def check_mergeable(path: Path, kind: str | None, merge: bool) -> None:
    """Refuse outputs whose trained part cannot become plain weights, saying why."""
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
