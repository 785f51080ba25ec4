"""Write a standalone model from a tunesmith output: a transformers folder, a GGUF file or an ONNX decoder.

    tunesmith export out/sft_lora_demo --out out/sft_lora_merged --merge
    tunesmith export out/sft_lora_demo --out out/sft_lora_gguf --format gguf --quant q8_0
    tunesmith export out/sft_lora_demo --out out/sft_lora_onnx --format onnx --quant int8

- LoRA-family adapters (LoRA, rsLoRA, DoRA, PiSSA/OLoRA converted at save time) are folded into
  the base weights with PEFT's `merge_and_unload` (needs --merge, which says the base is copied).
- full and freeze outputs are already whole models; they are re-saved as they are.
- prompt/ptuning/prefix, bottleneck adapters and mixtures of LoRA experts cannot be merged (virtual
  tokens; a non-linearity inside the adapter; a router that picks experts per token): refused with
  the reason; their output folder is what chat/eval load.
GGUF (export/gguf.py) and ONNX (export/onnx.py) always merge (they hold whole weights) and get a
check against the model it came from, run in their own runtime (export/check.py), in the manifest;
an fp32 ONNX graph whose logits differ from the model's by more than ONNX_F32_TOLERANCE fails the
export (the folder stays OUT.partial). A transformers folder can hold bitsandbytes 4/8-bit weights
for GPU serving (`--quant bnb4|bnb8`, export/bnb.py; refused without a CUDA GPU), or GPTQ/AWQ
weights in the compressed-tensors format vLLM serves (`--quant gptq4|gptq8|awq4`, export/calibrated.py,
llm-compressor).
The folder gets safetensors weights, the tokenizer with its chat template, and a manifest; it is
written to DIR.partial and renamed when complete (runtime.outputs.OutputFolder), so a crash never
leaves a folder that looks finished.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ExportCheckFailed, ModelError
from tunesmith.export.verify import after_export, enforce_max_drop, qa_settings
from tunesmith.layout import RUN_MANIFEST, trained_part
from tunesmith.methods.load import load_for_inference
from tunesmith.models.loader import resolve_model_path
from tunesmith.runtime.outputs import OutputFolder


def export_model(source: str, out: str, merge: bool = False, cache_dir: str | None = None,
                 overwrite: bool = False, format: str = "transformers", quant: str | None = None,
                 gguf_pre: str | None = None, qa: str | None = None, max_drop: float | None = None,
                 calibration: str | None = None) -> Path:
    """Export `source` as a transformers folder (`format="transformers"`), a GGUF file with an Ollama
    Modelfile (`format="gguf"`, weights as `quant`, default f16) or an ONNX decoder with its KV cache
    (`format="onnx"`, `quant` f32, int8, q8_0 or q4_0), checked against the model it came from in the artifact's
    own runtime (export/check.py) and on the run's QA questions (export/verify.py: `qa` or the
    output's eval.qa); `max_drop` fails the export when the artifact scores more than that below.
    A transformers folder takes `quant` bnb4/bnb8 (bitsandbytes, export/bnb.py) or gptq4/gptq8/awq4
    (llm-compressor, calibrated on the run's training rows or `calibration`, export/calibrated.py)."""
    if format not in FORMATS:
        raise ModelError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    quant = _quant(format, quant)
    if max_drop is not None and not 0 <= max_drop <= 1:
        raise ModelError(f"--max-drop {max_drop}: a fraction between 0 and 1 (0.05 = 5 points of accuracy)")
    from tunesmith.export.calibrated import QUANTS as CALIBRATED_QUANTS

    calibrated = quant in CALIBRATED_QUANTS
    if calibration and not calibrated:
        raise ModelError("--calibration: only --quant gptq4, gptq8 or awq4 are calibrated")
    if format == "transformers" and quant:
        from tunesmith.export import bnb, calibrated as llmc

        (llmc if calibrated else bnb).check_available(quant)  # before anything loads or is written
    path = Path(resolve_model_path(source, cache_dir))
    if calibrated:
        from tunesmith.export.calibrated import calibration_paths

        calibration_files, calibration_data = calibration_paths(path, calibration)
    qa, qa_tokens = qa_settings(path, qa)
    kind = trained_part(path)
    check_mergeable(path, kind, merge or format != "transformers" or bool(quant))
    output = OutputFolder(out, overwrite, protect=[str(path)])  # never replaces the model it reads
    loaded = load_for_inference(str(path), cache_dir, merge=True, dtype="auto" if format == "transformers" else "float32")
    if format == "gguf":  # refusals before anything is written
        from tunesmith.export.gguf import check_architecture, pretokenizer_name

        check_architecture(loaded.model.config)
        pretokenizer_name(loaded.tokenizer, gguf_pre)
    if format == "onnx":
        from tunesmith.export.onnx import check_architecture as check_onnx

        check_onnx(loaded.model.config)
    if calibrated:  # refusals (layer widths, bad calibration rows) before anything is written
        from tunesmith.export.calibrated import calibration_texts, group_size

        group = None if quant == "gptq8" else group_size(loaded.model)
        texts = calibration_texts(loaded.tokenizer, calibration_files, calibration_data)
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
    elif format == "onnx":
        from tunesmith.export.check import compare_onnx
        from tunesmith.export.onnx import MODEL_FILE, write_onnx

        written = write_onnx(loaded.model.cpu(), work / MODEL_FILE[quant], quant)
        loaded.tokenizer.save_pretrained(work)
        loaded.model.config.save_pretrained(work)  # what ONNX Runtime wrappers (optimum, transformers.js) read
        loaded.model.generation_config.save_pretrained(work)
        check = compare_onnx(work / MODEL_FILE[quant], loaded.model, loaded.tokenizer, loaded.system)
        manifest.update({"format": "onnx", "onnx": written, "check": check})
        if quant == "f32" and check["max_logit_diff"] > ONNX_F32_TOLERANCE:
            raise ExportCheckFailed(f"{work}: the fp32 ONNX graph's logits differ from the model's by {check['max_logit_diff']} "
                             f"(tolerance {ONNX_F32_TOLERANCE}); the export is left unfinished for inspection")
    else:
        from tunesmith.export.check import compare_transformers

        if calibrated:
            from tunesmith.export.calibrated import write_calibrated

            manifest["quantization"] = write_calibrated(loaded.model, loaded.tokenizer, work, quant, group, texts)
        elif quant:
            from tunesmith.export.bnb import write_bnb

            manifest["quantization"] = write_bnb(loaded.model, loaded.tokenizer, work, quant)
        else:
            loaded.model.save_pretrained(work)
            loaded.tokenizer.save_pretrained(work)
        suffix = "-compressed-tensors" if calibrated else "-bitsandbytes" if quant else ""
        manifest.update({"format": "transformers-safetensors" + suffix,
                         "check": compare_transformers(work, loaded.model, loaded.tokenizer, loaded.system)})
    artifact = work / manifest[format]["file"] if format in ("gguf", "onnx") else work
    manifest["after_export"] = after_export(format, artifact, loaded, manifest["check"], qa, qa_tokens)
    enforce_max_drop(manifest["after_export"], max_drop, work)
    return output.commit(manifest)


FORMATS = ("transformers", "gguf", "onnx")
ONNX_F32_TOLERANCE = 1e-3  # largest logit difference an fp32 ONNX graph may show (measured: 1.1e-4 on SmolLM2-135M)


def _quant(format: str, quant: str | None) -> str | None:
    from tunesmith.export.gguf import QUANTS as GGUF_QUANTS
    from tunesmith.export.onnx import QUANTS as ONNX_QUANTS

    from tunesmith.export.bnb import QUANTS as BNB_QUANTS
    from tunesmith.export.calibrated import QUANTS as CALIBRATED_QUANTS

    allowed = {"gguf": GGUF_QUANTS, "onnx": ONNX_QUANTS, "transformers": BNB_QUANTS + CALIBRATED_QUANTS}[format]
    if quant is None:
        return {"gguf": "f16", "onnx": "f32"}.get(format)
    if quant not in allowed:
        raise ModelError(f"--quant {quant}: --format {format} takes {', '.join(allowed)}")
    return quant


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
