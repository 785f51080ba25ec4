"""The export formats, one `Exporter` record each: what `tunesmith export --format` accepts, which
`--quant` values each takes, how it is refused before anything is written, how it writes, how the
artifact is compared with its source in the artifact's own runtime, and how that runtime answers
greedily (for the QA after export). The CLI's choices and the web page's lists come from `EXPORTERS`.

- transformers: a safetensors folder; `--quant bnb4|bnb8` (bitsandbytes, export/bnb.py; a CUDA GPU)
  or `gptq4|gptq8|awq4` (llm-compressor, calibrated, export/calibrated.py); loaded back to compare.
- gguf: our GGUF writer (export/gguf.py) + an Ollama Modelfile; read back by transformers' GGUF reader.
- onnx: a decoder with its KV cache (export/onnx.py), run by ONNX Runtime; an fp32 graph whose logits
  differ from the model's by more than ONNX_F32_TOLERANCE fails the export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import ExportCheckFailed, ModelError

BITSANDBYTES = ("bnb4", "bnb8")  # export/bnb.py
CALIBRATED = ("gptq4", "gptq8", "awq4")  # export/calibrated.py (llm-compressor)
ONNX_F32_TOLERANCE = 1e-3  # largest logit difference an fp32 ONNX graph may show (measured: 1.1e-4 on SmolLM2-135M)


@dataclass
class ExportJob:
    """One export: the source folder, the merged model (`loaded`, once it is loaded), the quant, the
    options of the formats that take any, and what `check` prepared for `write`."""

    source: Path | None  # set once the source is resolved (after `available`)
    name: str  # the output folder's name (GGUF metadata)
    quant: str | None
    gguf_pre: str | None = None
    calibration: str | None = None
    loaded: object = None  # models.loader.LoadedModel
    prepared: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Exporter:
    name: str  # --format
    quants: tuple[str, ...]  # --quant values it takes
    default_quant: str | None
    load_dtype: str  # the dtype the source is loaded in ("auto": as saved)
    available: Callable[[ExportJob], None]  # missing packages or hardware, before the source is even looked at
    inputs: Callable[[ExportJob], None]  # the files it reads besides the model, before the model loads
    check: Callable[[ExportJob], None]  # refusals on the loaded model, before anything is written
    write: Callable[[ExportJob, Path], dict]  # writes into the folder; returns the manifest's entries
    artifact: Callable[[Path, dict], Path]  # the file or folder written, from the folder and manifest
    compare: Callable[[ExportJob, Path], dict]  # the artifact against its source, in its own runtime
    greedy: Callable[[Path, object, object], Callable]  # (artifact, model, tokenizer) -> greedy(ids, new_tokens)


def _nothing(job: ExportJob) -> None:
    return None


# --- transformers: plain, bitsandbytes or llm-compressor weights -----------------------------------


def _calibrated(quant: str | None) -> bool:
    return quant in CALIBRATED


def _transformers_available(job: ExportJob) -> None:
    if job.calibration and not _calibrated(job.quant):
        raise ModelError("--calibration: only --quant gptq4, gptq8 or awq4 are calibrated")
    if job.quant:
        from tunesmith.export import bnb, calibrated

        (calibrated if _calibrated(job.quant) else bnb).check_available(job.quant)


def _transformers_inputs(job: ExportJob) -> None:
    if _calibrated(job.quant):
        from tunesmith.export.calibrated import calibration_paths

        job.prepared["calibration"] = calibration_paths(job.source, job.calibration)


def _transformers_check(job: ExportJob) -> None:
    if _calibrated(job.quant):  # layer widths, bad calibration rows
        from tunesmith.export.calibrated import calibration_texts, group_size

        files, data = job.prepared["calibration"]
        job.prepared["group"] = None if job.quant == "gptq8" else group_size(job.loaded.model)
        job.prepared["texts"] = calibration_texts(job.loaded.tokenizer, files, data)


def _transformers_write(job: ExportJob, work: Path) -> dict:
    model, tokenizer = job.loaded.model, job.loaded.tokenizer
    if _calibrated(job.quant):
        from tunesmith.export.calibrated import write_calibrated

        written = {
            "quantization": write_calibrated(
                model, tokenizer, work, job.quant, job.prepared["group"], job.prepared["texts"]
            )
        }
    elif job.quant:
        from tunesmith.export.bnb import write_bnb

        written = {"quantization": write_bnb(model, tokenizer, work, job.quant)}
    else:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        written = {}
    suffix = "-compressed-tensors" if _calibrated(job.quant) else "-bitsandbytes" if job.quant else ""
    return {**written, "format": "transformers-safetensors" + suffix}


def _transformers_compare(job: ExportJob, artifact: Path) -> dict:
    from tunesmith.export.compare import compare_transformers

    return compare_transformers(artifact, job.loaded.model, job.loaded.tokenizer, job.loaded.system)


def _transformers_greedy(artifact: Path, model, tokenizer):
    from transformers import AutoModelForCausalLM

    from tunesmith.export.bnb import load_kwargs
    from tunesmith.export.compare import torch_greedy

    return torch_greedy(AutoModelForCausalLM.from_pretrained(artifact, **load_kwargs(artifact)).eval(), tokenizer)


# --- gguf ------------------------------------------------------------------------------------------------


def _gguf_check(job: ExportJob) -> None:
    from tunesmith.export.gguf import check_architecture, pretokenizer_name

    check_architecture(job.loaded.model.config)
    pretokenizer_name(job.loaded.tokenizer, job.gguf_pre)


def _gguf_write(job: ExportJob, work: Path) -> dict:
    from tunesmith.export.gguf import write_gguf
    from tunesmith.export.ollama import modelfile

    name = f"model-{job.quant}.gguf"
    written = write_gguf(job.loaded.model, job.loaded.tokenizer, work / name, job.quant, job.name, job.gguf_pre)
    (work / "Modelfile").write_text(modelfile(name, job.loaded.tokenizer, job.loaded.system), encoding="utf-8")
    return {"format": "gguf", "gguf": {"file": name, **written}}


def _gguf_compare(job: ExportJob, artifact: Path) -> dict:
    from tunesmith.export.compare import compare_gguf

    return compare_gguf(artifact, job.loaded.model, job.loaded.tokenizer, job.loaded.system)


def _gguf_greedy(artifact: Path, model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.export.compare import torch_greedy

    read = AutoModelForCausalLM.from_pretrained(artifact.parent, gguf_file=artifact.name, dtype=torch.float32)
    return torch_greedy(read.eval(), tokenizer)


# --- onnx ------------------------------------------------------------------------------------------------


def _onnx_available(job: ExportJob) -> None:
    from tunesmith.export.onnx import check_toolchain

    check_toolchain()


def _onnx_check(job: ExportJob) -> None:
    from tunesmith.export.onnx import check_architecture

    check_architecture(job.loaded.model.config)


def _onnx_write(job: ExportJob, work: Path) -> dict:
    from tunesmith.export.onnx import MODEL_FILE, write_onnx

    written = write_onnx(job.loaded.model.cpu(), work / MODEL_FILE[job.quant], job.quant)
    job.loaded.tokenizer.save_pretrained(work)
    job.loaded.model.config.save_pretrained(work)  # what ONNX Runtime wrappers (optimum, transformers.js) read
    job.loaded.model.generation_config.save_pretrained(work)
    return {"format": "onnx", "onnx": written}


def _onnx_compare(job: ExportJob, artifact: Path) -> dict:
    from tunesmith.export.compare import compare_onnx

    check = compare_onnx(artifact, job.loaded.model, job.loaded.tokenizer, job.loaded.system)
    if job.quant == "f32" and check["max_logit_diff"] > ONNX_F32_TOLERANCE:
        raise ExportCheckFailed(
            f"{artifact.parent}: the fp32 ONNX graph's logits differ from the model's by "
            f"{check['max_logit_diff']} (tolerance {ONNX_F32_TOLERANCE}); the export is left "
            "unfinished for inspection"
        )
    return check


def _onnx_greedy(artifact: Path, model, tokenizer):
    from tunesmith.export.compare import onnx_decoder, onnx_greedy

    return onnx_greedy(onnx_decoder(artifact), model, tokenizer)


def _file(section: str) -> Callable[[Path, dict], Path]:
    return lambda work, manifest: work / manifest[section]["file"]


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter(
            "transformers",
            BITSANDBYTES + CALIBRATED,
            None,
            "auto",
            _transformers_available,
            _transformers_inputs,
            _transformers_check,
            _transformers_write,
            lambda work, manifest: work,
            _transformers_compare,
            _transformers_greedy,
        ),
        Exporter(
            "gguf",
            ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"),
            "f16",
            "float32",
            _nothing,
            _nothing,
            _gguf_check,
            _gguf_write,
            _file("gguf"),
            _gguf_compare,
            _gguf_greedy,
        ),
        Exporter(
            "onnx",
            ("f32", "int8", "q8_0", "q4_0"),
            "f32",
            "float32",
            _onnx_available,
            _nothing,
            _onnx_check,
            _onnx_write,
            _file("onnx"),
            _onnx_compare,
            _onnx_greedy,
        ),
    )
}


def all_quants() -> tuple[str, ...]:
    """Every --quant value some format takes, in table order (the CLI's choices)."""
    return tuple(dict.fromkeys(q for e in EXPORTERS.values() for q in e.quants))


def get_exporter(format: str) -> Exporter:
    if format not in EXPORTERS:
        raise ModelError(f"--format {format}: choose one of {', '.join(EXPORTERS)}")
    return EXPORTERS[format]


def choose_quant(exporter: Exporter, quant: str | None) -> str | None:
    """The quant an export writes: the given one if the format takes it, else the format's default."""
    if quant is None:
        return exporter.default_quant
    if quant not in exporter.quants:
        raise ModelError(f"--quant {quant}: --format {exporter.name} takes {', '.join(exporter.quants)}")
    return quant
