"""Which folders a run may replace: the rules behind `output_dir`, `overwrite_output` and `--overwrite`.

A finished run replaces its output folder, and a new run clears the `OUTPUT.partial` folder a
crashed one left. Both delete a folder, so both are limited to folders that can only be
tunesmith's own (see `runtime.outputs`), and some places are never an output folder at all:

    unsafe_output_dir("/")            -> "... is the file system root ..."
    unsafe_output_dir("out/sft")      -> None
    holds("out", "out/data.jsonl")    -> True

These checks read the file system (the working directory, the home folder); they never change it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def holds(folder: str | Path, path: str | Path) -> bool:
    """True if `path` is `folder` or lies inside it (symbolic links followed)."""
    folder, path = _real(folder), _real(path)
    return path == folder or folder in path.parents


def unsafe_output_dir(output_dir: str | Path) -> str | None:
    """Why `output_dir` can never be an output folder, or None if it can be one.

    An output folder is renamed, replaced (`overwrite_output`) and has a sibling `NAME.partial`,
    so it must name a folder of its own, and not one that holds the user's other files: the file
    system root, the home folder or an ancestor of it, the working directory or an ancestor of it."""
    raw = Path(output_dir)
    if str(output_dir).strip() == "" or raw.name in ("", ".", ".."):
        return (
            f"`{output_dir}` does not end in a folder name of its own (a run writes NAME.partial beside it "
            f"and replaces NAME); use a new folder such as out/my_run"
        )
    target = _real(raw)
    cwd, home = _real(Path.cwd()), _real(Path.home())
    if target == Path(target.anchor):
        return f"`{output_dir}` is the file system root; use a new folder such as out/my_run"
    if target == home or target in home.parents:
        return f"`{output_dir}` is your home folder or holds it; use a new folder such as out/my_run"
    if target == cwd or target in cwd.parents:
        return (
            f"`{output_dir}` is the working directory or holds it (a finished run replaces its output folder); "
            f"use a new folder such as out/my_run"
        )
    return None


# Every config key whose value names a file or folder a run reads (a list of them or one): data,
# the dataset registry, the QA and suite files, replay and general sets, the base and reward models.
# Each eval suite's record says which of these it reads (eval.suites.Suite.reads; a test holds them to this).
INPUT_KEYS = (
    "data.train",
    "data.validation",
    "data.registry",
    "eval.qa",
    "eval.generation",
    "eval.mcq",
    "eval.consistency",
    "eval.edge_cases",
    "eval.judge.prompts",
    "eval.judge.template",
    "eval.judge.model",
    "eval.judge.baseline",
    "eval.lm_eval.include_path",
    "forgetting.replay",
    "forgetting.general_eval",
    "forgetting.general_qa",
    "model.name_or_path",
    "ppo.reward_model",
)


def key_values(cfg, key: str) -> list:
    """The values a dotted key holds in `cfg` (none when a section on the way is unset)."""
    value = cfg
    for part in key.split("."):
        value = getattr(value, part, None)
        if value is None:
            return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def config_inputs(cfg) -> list[tuple[str, str]]:
    """(config key, local path) of every file or folder a run reads (INPUT_KEYS) that exists here."""
    found = [(key, value) for key in INPUT_KEYS for value in key_values(cfg, key)]
    return [(key, str(p)) for key, p in found if p and os.path.exists(p)]


def inputs_inside(output_dir: str | Path, cfg) -> str | None:
    """Why `output_dir` cannot be used with `cfg`: it holds a file the run reads (replacing the
    folder would delete it); None if it holds none."""
    for key, path in config_inputs(cfg):
        if holds(output_dir, path):
            return (
                f"{key}: `{path}` lies inside output_dir `{output_dir}`, which a run replaces; move it out of "
                f"the output folder or choose another output_dir"
            )
    return None
