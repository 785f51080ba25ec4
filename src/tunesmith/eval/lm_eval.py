"""lm-evaluation-harness tasks on the loaded model, offline, through lm-eval's Python API.

    eval:
      lm_eval:
        tasks: [tunesmith_mcq]
        include_path: examples/lm_eval      # local task YAMLs

    tunesmith eval --model out/demo --lm-eval tunesmith_mcq --lm-eval-tasks examples/lm_eval

The model already loaded for evaluation (a base, a full output, a LoRA output with its adapter
merged) is wrapped in lm-eval's `HFLM` with its tokenizer and run by `lm_eval.simple_evaluate`;
nothing is loaded twice. A local task YAML reads its data with `dataset_path: json` (or `csv`) and
`dataset_kwargs: {data_files: ...}`: datasets' packaged builders read the files without the hub
(tests/eval/test_eval_lm_eval.py runs with the hub switched off). A relative `data_files` path is resolved
against the YAML's folder (lm-eval alone would resolve it against the working directory). Set
`HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1` in the environment to make any task that would download
fail at once; lm-eval's own tasks (MMLU, HellaSwag ...) need their datasets in the HF cache.

Results: `lm_eval/TASK/METRIC` for each metric lm-eval reports (`acc`, `acc_norm`, `exact_match`
...; its filter suffix `,none` dropped, another filter kept as `METRIC,FILTER`), `.../METRIC_stderr`,
`lm_eval/TASK/samples` (documents scored) and `lm_eval_version`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import yaml

from tunesmith.errors import ConfigError

INSTALL = "pip install 'tunesmith[lm-eval]' (lm-eval>=0.4.13)"


def _installed() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError(f"eval.lm_eval: lm-evaluation-harness is not installed; {INSTALL}")


def local_tasks(include_path: str | None) -> dict[str, Path]:
    """Task name -> YAML file of every plain task YAML under `include_path`."""
    found: dict[str, Path] = {}
    if include_path is None:
        return found
    root = Path(include_path)
    if not root.is_dir():
        raise ConfigError(f"eval.lm_eval.include_path: `{include_path}` is not a folder of task YAMLs")
    for path in sorted(root.rglob("*.yaml")):
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue  # lm-eval's own tags (!function ...): indexed by lm-eval, not here
        if isinstance(config, dict) and isinstance(config.get("task"), str):
            found[config["task"]] = path
    return found


def task_manager(lm_cfg):
    """lm-eval's TaskManager over include_path; its own ~15,000 built-in tasks (23 s to index on a
    2-core machine) only when a requested task is not found there."""
    from lm_eval.tasks import TaskManager

    if lm_cfg.include_path and all(t in local_tasks(lm_cfg.include_path) for t in lm_cfg.tasks):
        manager = TaskManager(include_path=lm_cfg.include_path, include_defaults=False)
    else:
        manager = TaskManager(include_path=lm_cfg.include_path)
    unknown = [t for t in lm_cfg.tasks if t not in manager.all_tasks]
    if unknown:
        where = f"in `{lm_cfg.include_path}` or " if lm_cfg.include_path else ""
        raise ConfigError(
            f"eval.lm_eval.tasks: {', '.join(unknown)} not found {where}among lm-eval's tasks "
            f"(local tasks: {', '.join(sorted(local_tasks(lm_cfg.include_path))) or 'none'})"
        )
    return manager


def check_lm_eval(lm_cfg) -> None:
    """lm-eval is installed, include_path is a folder, every local task's data files exist."""
    _installed()
    for name, path in local_tasks(lm_cfg.include_path).items():
        if name in lm_cfg.tasks:
            for files in _data_files(path).values():
                for pattern in files:
                    if not any(Path(p).exists() for p in _glob(pattern)):
                        raise ConfigError(f"{path}: dataset_kwargs.data_files: `{pattern}` matches no file")


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]


def _data_files(path: Path) -> dict[str, list[str]]:
    """The task's data_files with relative paths made absolute against the YAML's folder."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if files is None:
        return {}
    split_files = files if isinstance(files, dict) else {"train": files}
    resolved = {}
    for split, value in split_files.items():
        values = value if isinstance(value, list) else [value]
        resolved[split] = [
            v if "://" in v or Path(v).is_absolute() else str((path.parent / v).resolve()) for v in values
        ]
    return resolved


def task_specs(lm_cfg) -> list:
    """The tasks as lm-eval takes them: a name, or for a local task with data files, its config
    with the files' paths made absolute."""
    local = local_tasks(lm_cfg.include_path)
    specs = []
    for name in lm_cfg.tasks:
        if name in local and _data_files(local[name]):
            config = yaml.safe_load(local[name].read_text(encoding="utf-8"))
            config["dataset_kwargs"] = {**config["dataset_kwargs"], "data_files": _data_files(local[name])}
            specs.append(config)
        else:
            specs.append(name)
    return specs


def lm_eval_metrics(model, tokenizer, lm_cfg, batch_size: int, seed: int) -> dict:
    _installed()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    manager = task_manager(lm_cfg)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    output = simple_evaluate(
        model=lm,
        tasks=task_specs(lm_cfg),
        num_fewshot=lm_cfg.num_fewshot,
        limit=lm_cfg.limit,
        task_manager=manager,
        log_samples=False,
        bootstrap_iters=1000,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    result: dict = {"lm_eval_version": importlib.metadata.version("lm_eval")}
    for task, metrics in sorted(output["results"].items()):
        for key, value in metrics.items():
            if key in ("alias", "sample_len") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric = key.removesuffix(",none")
            result[f"lm_eval/{task}/{metric}"] = value
        samples = (output.get("n-samples") or {}).get(task, {}).get("effective")
        if samples is not None:
            result[f"lm_eval/{task}/samples"] = samples
    return result
