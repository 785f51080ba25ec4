"""`tunesmith export`: write a standalone model from a tunesmith output, in any format of
`export.formats.EXPORTERS`, checked against the model it came from.

    tunesmith export out/sft_lora_demo --out out/sft_lora_merged --merge
    tunesmith export out/sft_lora_demo --out out/sft_lora_gguf --format gguf --quant q8_0
    tunesmith export out/sft_lora_demo --out out/sft_lora_onnx --format onnx --quant int8

The order is the same for every format: refusals that need no model (format, quant, packages,
calibration files, whether the output merges), the model loaded and merged, refusals on it
(architecture, tokenizer, calibration rows), then the folder is opened and written, the artifact is
compared with its source in its own runtime (export/compare.py) and asked the run's QA questions
(export/qa.py), and the manifest is written last. The folder is written to DIR.partial and renamed
when complete (runtime.outputs.OutputFolder), so a crash or a failed check never leaves a folder
that looks finished.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ModelError
from tunesmith.export.formats import ExportJob, choose_quant, get_exporter
from tunesmith.export.merge import check_mergeable
from tunesmith.export.qa import after_export, enforce_max_drop, qa_settings
from tunesmith.layout import RUN_MANIFEST, trained_part
from tunesmith.methods.load import load_for_inference
from tunesmith.models.loader import resolve_model_path
from tunesmith.runtime.outputs import OutputFolder


def export_model(
    source: str,
    out: str,
    merge: bool = False,
    cache_dir: str | None = None,
    overwrite: bool = False,
    format: str = "transformers",
    quant: str | None = None,
    gguf_pre: str | None = None,
    qa: str | None = None,
    max_drop: float | None = None,
    calibration: str | None = None,
) -> Path:
    """Export `source` as `format` (a transformers folder, a GGUF file with an Ollama Modelfile, an ONNX
    decoder with its KV cache; see export.formats), weights as `quant` (the format's default when
    None), checked against the model it came from in the artifact's own runtime and on the run's QA
    questions (`qa` or the output's eval.qa); `max_drop` fails the export when the artifact scores
    more than that below. `calibration`: the rows a calibrated quant (gptq4/gptq8/awq4) is fitted on."""
    exporter = get_exporter(format)
    quant = choose_quant(exporter, quant)
    if max_drop is not None and not 0 <= max_drop <= 1:
        raise ModelError(f"--max-drop {max_drop}: a fraction between 0 and 1 (0.05 = 5 points of accuracy)")
    job = ExportJob(None, Path(out).name, quant, gguf_pre=gguf_pre, calibration=calibration)
    exporter.available(job)  # before anything loads or is written
    path = job.source = Path(resolve_model_path(source, cache_dir))
    exporter.inputs(job)
    qa, qa_tokens = qa_settings(path, qa)
    kind = trained_part(path)
    check_mergeable(path, kind, merge or format != "transformers" or bool(quant))
    output = OutputFolder(out, overwrite, protect=[str(path)])  # never replaces the model it reads
    job.loaded = load_for_inference(str(path), cache_dir, merge=True, dtype=exporter.load_dtype)
    exporter.check(job)  # refusals before anything is written
    work = output.open()
    source_manifest = job.loaded.manifest if (path / RUN_MANIFEST).is_file() else {}
    manifest = {**source_manifest, "exported_from": str(path), "merged_adapter": kind == "lora"}
    manifest.update(exporter.write(job, work))
    artifact = exporter.artifact(work, manifest)
    manifest["check"] = exporter.compare(job, artifact)
    greedy = exporter.greedy(artifact, job.loaded.model, job.loaded.tokenizer) if qa else None
    manifest["after_export"] = after_export(greedy, job.loaded, manifest["check"], qa, qa_tokens)
    enforce_max_drop(manifest["after_export"], max_drop, work)
    return output.commit(manifest)
