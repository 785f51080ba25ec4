"""Combine several LoRA adapters of one base into one weighted adapter.

    tunesmith adapters combine out/support_plus_sales --adapter out/support:0.7 --adapter out/sales:0.3

PEFT's `add_weighted_adapter` does the arithmetic; the result is an ordinary output folder (adapter,
tokenizer, manifest naming its sources and weights) that chat, eval and export load like any run.
- `cat` is exact: the combined weight delta is sum_i w_i * dW_i (its rank is the sum of the ranks);
- `svd` recompresses that exact sum to `--rank` (default: the largest input rank);
- `linear` averages the A and B factors themselves (same ranks needed), which only approximates
  the weighted delta;
- `ties`, `dare_linear`, `dare_ties`, `magnitude_prune` (and their `_svd` forms) are the
  task-arithmetic merges that first prune each delta to `--density`.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ConfigError, ModelError
from tunesmith.models.loader import load_causal_lm, load_tokenizer, resolve_model_path
from tunesmith.models.lora_set import check_switchable, common_base, describe_output
from tunesmith.runtime.outputs import OutputFolder

# PEFT's add_weighted_adapter combinations; those that prune (TIES, DARE, magnitude) take a density
PRUNING = ("ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd", "magnitude_prune",
           "magnitude_prune_svd")  # fmt: skip
COMBINATIONS = ("cat", "linear", "svd", *PRUNING)


def combine_adapters(
    weighted: list[tuple[str, float]],
    out: str,
    combination: str = "cat",
    density: float | None = None,
    rank: int | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the weighted combination of LoRA adapters (same base) as a new output folder."""
    from peft import PeftModel

    if combination not in COMBINATIONS:
        raise ConfigError(f"--combination {combination}: choose one of {', '.join(COMBINATIONS)}")
    if len(weighted) < 2:
        raise ConfigError("combine needs at least two adapters (--adapter PATH[:WEIGHT], repeated)")
    if (density is not None) != (combination in PRUNING):
        raise ConfigError(
            f"--density goes with the pruning combinations ({', '.join(PRUNING)}), and they need it"
            if density is None
            else f"--density has no meaning for --combination {combination}"
        )
    if density is not None and not 0.0 < density <= 1.0:
        raise ConfigError(f"--density {density}: must be in (0, 1]")
    if rank is not None and not combination.endswith("svd"):
        raise ConfigError(f"--rank applies to the svd combinations only, not {combination}")
    output = OutputFolder(out, overwrite, protect=[path for path, _ in weighted])  # checked first; never an input
    infos = [describe_output(path) for path, _ in weighted]
    names = [f"a{i}" for i in range(len(infos))]
    for info in infos:
        check_switchable(info)
        if info.dora:
            raise ModelError(
                f"{info.path}: a DoRA adapter; its per-column magnitudes have no weighted sum, so DoRA "
                "adapters cannot be combined (merge each into its own base with `tunesmith export`)"
            )
    if combination == "linear" and len({info.rank for info in infos}) > 1:
        raise ConfigError(
            f"--combination linear needs adapters of one rank (got {[i.rank for i in infos]}); use cat (exact) or svd"
        )
    base_path = common_base(infos, cache_dir)
    tokenizers = [load_tokenizer(str(info.path)) for info in infos]
    if len({t.chat_template for t in tokenizers}) > 1:
        raise ModelError(
            "these adapters were trained with different chat templates; a combined adapter could "
            "answer in only one of them"
        )
    base = load_causal_lm(resolve_model_path(base_path, cache_dir))  # fp32: the combination is computed exactly
    model = PeftModel.from_pretrained(base, str(infos[0].path), adapter_name=names[0])
    for name, info in zip(names[1:], infos[1:]):
        model.load_adapter(str(info.path), adapter_name=name)
    try:
        model.add_weighted_adapter(
            names, [w for _, w in weighted], "combined", combination_type=combination, svd_rank=rank, density=density
        )
    except ValueError as exc:  # PEFT's own compatibility checks (e.g. two adapters saving the same head)
        raise ModelError(f"PEFT cannot combine these adapters: {exc}") from None
    work = output.open()
    model.save_pretrained(str(work), selected_adapters=["combined"])
    nested = work / "combined"  # PEFT saves a non-default adapter in a subfolder of its name
    if nested.is_dir():
        for item in nested.iterdir():
            item.rename(work / item.name)
        nested.rmdir()
    tokenizers[0].save_pretrained(str(work))
    first = infos[0].manifest
    manifest = {
        "stage": first.get("stage"),
        "method": first.get("method"),
        "base_model": base_path,
        "base_model_ref": first.get("base_model_ref"),
        "system": first.get("system"),
        "combined_from": [{"path": str(info.path), "weight": w} for info, (_, w) in zip(infos, weighted)],
        "combination": combination,
        "density": density,
        "svd_rank": rank,
    }
    return output.commit(manifest)
