"""Checked after export: the run's QA evaluation re-run on the artifact in its own runtime.

    tunesmith export out/demo --format onnx --quant int8 --out out/demo_onnx8 --max-drop 0.05

When the output's config has `eval.qa` (or `--qa FILE` names one), every question is answered
greedily twice, one at a time, by the trained model (torch) and by the artifact in the runtime it
ships for (ONNX Runtime with the KV cache, the GGUF as transformers' reader dequantises it, the
transformers folder loaded back), and scored as `tunesmith eval` scores QA (a reply is correct
when it contains an answer). The manifest's `after_export` holds both accuracies, the drop and the
questions whose mark changed. Without QA, the drop is 1 - the greedy agreement of the check.
`--max-drop X` fails the export when the drop exceeds X: the folder stays OUT.partial with
`export_check.json` in it, and no manifest (so nothing loads it as a finished model).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.errors import ExportCheckFailed, ModelError
from tunesmith.eval.qa import is_correct, load_qa
from tunesmith.export.compare import chat_ids, torch_greedy


def qa_settings(source: Path, given: str | None) -> tuple[str | None, int]:
    """(QA file, new tokens per reply): `--qa FILE`, else the `eval.qa` and `eval.max_new_tokens` of the
    config saved in the output (config.yaml); (None, 48) without either."""
    import yaml

    config = source / "config.yaml"
    section = {}
    if config.is_file():
        section = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("eval") or {}
    qa = given or section.get("qa")
    if qa and not Path(qa).is_file():
        where = "--qa" if given else f"{config}: eval.qa"
        raise ModelError(
            f"{where} `{qa}` is not a file from here (a config's paths are relative to the working "
            "directory the run started in); run the export from there or pass --qa FILE"
        )
    return qa, int(section.get("max_new_tokens") or 48)


def qa_comparison(path: str, source, artifact, tokenizer, system: str | None, new_tokens: int) -> dict:
    items = load_qa(path)
    marks = []
    for item in items:
        ids = chat_ids(tokenizer, item.question, system)
        replies = [tokenizer.decode(fn(ids, new_tokens), skip_special_tokens=True).strip() for fn in (source, artifact)]
        marks.append([is_correct(r, item.answers) for r in replies])
    trained, exported = (sum(m[i] for m in marks) / len(items) for i in (0, 1))
    changed = [i.question for i, m in zip(items, marks) if m[0] != m[1]]
    return {
        "qa_file": str(path),
        "qa_total": len(items),
        "trained_qa_accuracy": round(trained, 4),
        "artifact_qa_accuracy": round(exported, 4),
        "drop": round(trained - exported, 4),
        "changed_questions": changed[:10],
    }


def after_export(artifact, loaded, check: dict, qa: str | None, new_tokens: int) -> dict:
    """The comparison written into the manifest (`after_export`); `artifact`: greedy(ids, new_tokens) of
    the artifact in its own runtime (export.formats' `greedy`), needed when there is a QA file."""
    if qa:
        source = torch_greedy(loaded.model, loaded.tokenizer)
        return {
            "measure": "qa_accuracy",
            **qa_comparison(qa, source, artifact, loaded.tokenizer, loaded.system, new_tokens),
        }
    return {
        "measure": "greedy_agreement",
        "greedy_agreement": check["greedy_agreement"],
        "drop": round(1 - check["greedy_agreement"], 4),
    }


def enforce_max_drop(result: dict, max_drop: float | None, work: Path) -> None:
    if max_drop is None or result["drop"] <= max_drop:
        return
    (work / "export_check.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    what = (
        f"QA accuracy {result['trained_qa_accuracy']:.3f} -> {result['artifact_qa_accuracy']:.3f}"
        if result["measure"] == "qa_accuracy"
        else f"greedy agreement {result['greedy_agreement']:.3f}"
    )
    raise ExportCheckFailed(
        f"export check failed: {what}, a drop of {result['drop']:.3f} > --max-drop {max_drop}; the "
        f"artifact is left in {work} (not finished; details in {work / 'export_check.json'})"
    )
