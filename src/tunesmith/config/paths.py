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
        return (f"`{output_dir}` does not end in a folder name of its own (a run writes NAME.partial beside it "
                f"and replaces NAME); use a new folder such as out/my_run")
    target = _real(raw)
    cwd, home = _real(Path.cwd()), _real(Path.home())
    if target == Path(target.anchor):
        return f"`{output_dir}` is the file system root; use a new folder such as out/my_run"
    if target == home or target in home.parents:
        return f"`{output_dir}` is your home folder or holds it; use a new folder such as out/my_run"
    if target == cwd or target in cwd.parents:
        return (f"`{output_dir}` is the working directory or holds it (a finished run replaces its output folder); "
                f"use a new folder such as out/my_run")
    return None


def config_inputs(cfg) -> list[tuple[str, str]]:
    """(config key, local path) of every file or folder a run reads: data, registry, QA file,
    replay and general-eval sets, the general QA file, the base and reward models when they are local folders."""
    found = [("data.train", p) for p in cfg.data.train] + [("data.validation", p) for p in cfg.data.validation]
    found += [("data.registry", cfg.data.registry), ("eval.qa", cfg.eval.qa)]
    found += [(f"eval.{key}", getattr(cfg.eval, key)) for key in ("generation", "mcq", "consistency", "edge_cases")]
    judge, lm_eval = cfg.eval.judge, cfg.eval.lm_eval
    if judge:
        found += [("eval.judge.prompts", judge.prompts), ("eval.judge.template", judge.template),
                  ("eval.judge.model", judge.model), ("eval.judge.baseline", judge.baseline)]
    if lm_eval:
        found += [("eval.lm_eval.include_path", lm_eval.include_path)]
    found += [("forgetting.replay", p) for p in cfg.forgetting.replay]
    found += [("forgetting.general_eval", p) for p in cfg.forgetting.general_eval]
    found += [("forgetting.general_qa", cfg.forgetting.general_qa)]
    found += [("model.name_or_path", cfg.model.name_or_path), ("ppo.reward_model", cfg.ppo.reward_model)]
    return [(key, str(p)) for key, p in found if p and os.path.exists(p)]


def inputs_inside(output_dir: str | Path, cfg) -> str | None:
    """Why `output_dir` cannot be used with `cfg`: it holds a file the run reads (replacing the
    folder would delete it); None if it holds none."""
    for key, path in config_inputs(cfg):
        if holds(output_dir, path):
            return (f"{key}: `{path}` lies inside output_dir `{output_dir}`, which a run replaces; move it out of "
                    f"the output folder or choose another output_dir")
    return None
