"""The seams of docs/design.md, checked on the source: no import cycle, no stage-name branching
outside `stages/`, no stage importing another, and one data path whose every option works for a
stage or is refused for it (max_samples and overlength run through every row-reading stage)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.config.schema import METHOD_NAMES, STAGE_NAMES, DataConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.stages.registry import STAGES as RECORDS
from tunesmith.stages.registry import check_data_options, check_stage

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunesmith"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every tunesmith module `name` imports, at module level or inside functions (lazy imports count)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in mods}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
                module = ".".join(base)
            else:
                module = node.module or ""
            if module.startswith("tunesmith"):
                out |= {f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names}
    return out & set(mods)


def test_no_import_cycle_among_the_package_modules():
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 50  # the walk saw the package


def _stage_modules() -> set[str]:
    return {f"tunesmith.stages.{record.name}" for record in RECORDS.values()}


def test_no_stage_module_imports_another():
    mods = _modules()
    stage_modules = _stage_modules()
    assert stage_modules <= set(mods)
    for name in stage_modules:
        others = _imports(name, mods[name], mods) & (stage_modules - {name})
        assert not others, (
            f"{name} imports stage module(s) {sorted(others)}; shared code belongs in stages.lifecycle, "
            "stages.token_recipe, stages.held_out or below"
        )


def test_no_code_outside_stages_branches_on_a_stage_name():
    """Comparing a `.stage` with a literal (== "rm", in ("sft", "pt")) outside stages/ is the chain the
    record replaced; so is any literal stage name compared with something."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith("tunesmith.stages"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            touches_stage = any(isinstance(s, ast.Attribute) and s.attr == "stage" for s in sides)
            literals = [
                c.value
                for s in sides
                for c in ([s] if isinstance(s, ast.Constant) else getattr(s, "elts", []))
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            if (touches_stage and literals) or any(value in STAGE_NAMES for value in literals):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "stage-name branching outside stages/:\n" + "\n".join(offenders)


def test_every_stage_has_a_record_and_every_schema_stage_is_registered():
    assert set(RECORDS) == set(STAGE_NAMES)
    for name, record in RECORDS.items():
        assert record.name == name and record.data_kind in ("chat", "text", "rows")
        assert record.data_options <= set(DataConfig.model_fields), name
        assert {"train", "validation", "max_samples"} <= record.data_options, name


# A value other than the default for every data option, to set one at a time.
SAMPLE = {
    "validation": ["v.jsonl"],
    "registry": "r.yaml",
    "weights": [1.0],
    "format": "alpaca",
    "columns": {"instruction": "q"},
    "system": "Be brief.",
    "max_length": 64,
    "overlength": "drop",
    "template": "chatml",
    "train_on_prompt": True,
    "last_turn_only": True,
    "max_samples": 3,
    "val_split": 0.2,
    "on_error": "skip",
    "max_reject_fraction": 0.5,
    "packing": True,
    "clean": {"dedup": True},
    "cache": False,
    "streaming": True,
    "augment": {"system_prompts": ["a"]},
}


def test_every_data_option_is_supported_or_refused_naming_key_and_stage(tmp_path):
    assert set(SAMPLE) == set(DataConfig.model_fields) - {"train"}  # a new option needs a decision here
    refused = 0
    for stage in RECORDS.values():
        for key, value in SAMPLE.items():
            if key in stage.data_options:
                continue
            cfg = load_config(write_config(tmp_path / "c.yaml", f"stage: {stage.name}\noutput_dir: o\n"), [])
            cfg = cfg.model_copy(update={"data": DataConfig(train=["t.jsonl"], **{key: value})})
            with pytest.raises(ConfigError, match=rf"data\.{key}: stage `{stage.name}` does not support it"):
                check_data_options(cfg, stage)
            refused += 1
    assert refused > 20


# --- one data path: max_samples and overlength through every stage whose trainer tokenises -------

ROWS = {
    "dpo": lambda i: {"prompt": f"Question {i}?", "chosen": "A kind and helpful answer.", "rejected": "No."},
    "rm": lambda i: {"prompt": f"Question {i}?", "chosen": "A kind and helpful answer.", "rejected": "No."},
    "kto": lambda i: {"prompt": f"Question {i}?", "completion": "Sure." if i % 2 else "No.", "label": bool(i % 2)},
    "grpo": lambda i: {"prompt": f"What is {i} plus 1?", "answer": str(i + 1)},
    "ppo": lambda i: {"prompt": f"What is {i} plus 1?", "answer": str(i + 1)},
}
SECTIONS = {
    "dpo": "",
    "rm": "",
    "kto": "",
    "grpo": "grpo: {rewards: [{name: exact_answer}], num_generations: 2, max_completion_length: 4}\n",
    "ppo": "ppo: {rewards: [{name: exact_answer}], num_generations: 2, max_completion_length: 4}\n",
}
LONG = " ".join(["word"] * 120)


def _row_config(tmp_path, tiny_model_dir, stage, rows, extra=""):
    data = write_jsonl(tmp_path / f"{stage}.jsonl", rows)
    return write_config(
        tmp_path / f"{stage}.yaml",
        f"""stage: {stage}
method: lora
output_dir: {tmp_path / ("out_" + stage)}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {data}, max_length: 64, max_samples: 6}}
{SECTIONS[stage]}training: {{max_steps: 1, batch_size: 2, logging_steps: 1, learning_rate: 0.001}}
{extra}""",
    ), data


@pytest.mark.parametrize("stage", sorted(ROWS))
def test_overlength_error_names_the_row_in_every_row_stage(tmp_path, tiny_model_dir, stage):
    rows = [ROWS[stage](i) for i in range(8)]
    long_field = "chosen" if stage in ("dpo", "rm") else "completion" if stage == "kto" else "prompt"
    rows[2] = {**rows[2], long_field: LONG}
    config, data = _row_config(tmp_path, tiny_model_dir, stage, rows)
    cfg = load_config(config, ["data.overlength=error"])
    with pytest.raises(DataError, match=rf"{data}:3:overlength: \d+ tokens > data.max_length=64"):
        check_stage(cfg)
    # drop: the row leaves, counted; the rest is valid
    check_stage(load_config(config, ["data.overlength=drop"]))


@pytest.mark.trains
@pytest.mark.parametrize("stage", sorted(ROWS))
def test_max_samples_caps_every_row_stage(tmp_path, tiny_model_dir, stage):
    config, _ = _row_config(
        tmp_path, tiny_model_dir, stage, [ROWS[stage](i) for i in range(10)], "eval: {compare_base: false}\n"
    )
    assert main(["train", str(config)]) == 0
    manifest = json.loads((tmp_path / f"out_{stage}" / "tunesmith.json").read_text())
    assert manifest["data"]["train_rows"] == 6, manifest["data"]


def test_methods_are_all_in_the_schema():
    from tunesmith.methods import METHODS

    assert set(METHODS) == set(METHOD_NAMES)
    assert all(record.name == name for name, record in METHODS.items())


def test_checking_a_config_changes_nothing_in_the_environment(tmp_path, tiny_model_dir, facts_data, monkeypatch):
    """MLflow's local store is chosen when a run starts, not by the pre-flight check (search, the web page
    and `data check` run the check without training)."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = write_config(
        tmp_path / "c.yaml",
        f"stage: sft\noutput_dir: {tmp_path / 'o'}\nmodel: {{name_or_path: "
        f"{tiny_model_dir}}}\ndata: {{train: {facts_data['train']}}}\n"
        "training: {report_to: [mlflow]}\n",
    )
    before = dict(os.environ)
    check_stage(load_config(config))
    assert dict(os.environ) == before
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


# docs/design.md's layers, bottom to top: a module imports only from its own layer or below.
LAYERS = (
    ("tunesmith", "tunesmith.errors", "tunesmith.layout", "tunesmith.config"),
    ("tunesmith.models",),
    ("tunesmith.data",),
    ("tunesmith.runtime", "tunesmith.methods"),
    ("tunesmith.eval", "tunesmith.export", "tunesmith.model_registry"),
    ("tunesmith.stages",),
    ("tunesmith.search", "tunesmith.benchmark", "tunesmith.serve"),
    ("tunesmith.commands", "tunesmith.ui"),
    ("tunesmith.cli", "tunesmith.__main__"),
)


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _layer(module: str) -> int | None:
    for level, packages in enumerate(LAYERS):
        if module in packages or any(p != "tunesmith" and module.startswith(p + ".") for p in packages):
            return level
    return None


def test_every_module_imports_only_from_its_layer_or_below():
    """The layer order of docs/design.md, on every import (lazy ones too), not only the absence of cycles."""
    mods = _modules()
    unplaced = sorted(name for name in mods if _layer(name) is None)
    assert not unplaced, f"modules in no layer (add their package to LAYERS and docs/design.md): {unplaced}"
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, path in mods.items()
        for target in sorted(_imports(name, path, mods))
        if _layer(target) > _layer(name)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_model_registry_and_the_evaluation_sit_below_the_stages():
    """Two seams the layers hold: eval never reaches into stages (a stage's record is handed to it),
    and model_registry is asked by the commands and serve, never the other way round."""
    assert _layer("tunesmith.eval.run") < _layer("tunesmith.stages.registry")
    assert _layer("tunesmith.model_registry.store") < _layer("tunesmith.serve.api") < _layer("tunesmith.cli")


# Work-log references (issue numbers, stops, the mission map) belong in docs/benchmarks.md and the
# issue tracker, not in the product's code and docs.
WORK_LOG = re.compile(r"issue ?#?\d+|(?:^|[\s(])stops? \d+|mission map|\bwave \d", re.IGNORECASE)


def test_no_work_log_references_in_source_or_docs():
    root = PACKAGE.parents[1]
    files = [
        *PACKAGE.rglob("*.py"),
        *root.glob("examples/**/*.yaml"),
        *root.glob("docs/*.md"),
        root / "README.md",
        *root.glob("scripts/*"),
        *root.glob("bench/*.py"),
    ]
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()[:100]}"
        for path in files
        if path.is_file() and path.name != "benchmarks.md"  # figures keep their history there
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if WORK_LOG.search(line)
    ]
    assert len(files) > 100 and not found, "\n".join(found)


def test_user_messages_follow_the_one_rule():
    """docs/design.md, "Messages": below the commands, what a run tells its user is printed with the
    `[tunesmith]` prefix (or to a stream it was handed); bare output (tables, JSON) is the commands' own."""
    offenders = []
    for name, path in _modules().items():
        if _within(name, ("tunesmith.commands", "tunesmith.benchmark", "tunesmith.cli")):
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                text = ast.get_source_segment(source, node) or ""
                if "[tunesmith]" not in text and not any(k.arg == "file" for k in node.keywords):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {text[:80]}")
    assert not offenders, "\n".join(offenders)
