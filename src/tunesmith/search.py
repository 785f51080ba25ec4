"""Hyper-parameter search with Optuna over any config keys (`tunesmith search CONFIG.yaml`).

Each trial is an ordinary training run with the sampled keys applied as overrides, written to
OUTPUT/trial-N (a finished, loadable output like any other). With pruning, every epoch's
validation loss is reported to Optuna and a trial worse than the median of earlier trials at the
same epoch stops early. At the end: a results table, OUTPUT/search_results.json, and
OUTPUT/best.yaml — the config with the best values, ready for `tunesmith train`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from transformers import TrainerCallback

from tunesmith.config import dump_config, load_config
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.runtime.hooks import extra_callbacks
from tunesmith.stages.registry import check_stage, run_stage


class _Report(TrainerCallback):
    """Report each evaluation's loss to the trial; stop the run when Optuna prunes it."""

    def __init__(self, trial, enabled: bool):
        self.trial, self.enabled, self.pruned = trial, enabled, False
        self.last: tuple[int, float] | None = None  # (epoch, eval_loss) of the last report

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not (self.enabled and metrics and "eval_loss" in metrics):
            return
        # the first evaluation after k whole epochs stands for epoch k (trials with other batch sizes or
        # eval_steps line up by epoch); later ones before epoch k+1 are not reported, as Optuna keeps one
        # value a step and warns about a second
        epoch = math.floor((state.epoch or 0) + 1e-6)
        if self.last is not None and epoch <= self.last[0]:
            return
        self.last = (epoch, metrics["eval_loss"])
        self.trial.report(metrics["eval_loss"], step=epoch)
        if self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True


# data keys that leave the validation rows and the tokens they are scored on as they are
SAME_VALIDATION = ("data.augment", "data.cache", "data.streaming", "data.on_error", "data.max_reject_fraction")


def _warn_moving_validation(search) -> None:
    """A searched data key that changes the validation rows (a val_split of other training rows) or how
    they are tokenised and scored (max_length, train_on_prompt, template ...) makes the trials' eval_loss
    measure different things: said once, before the first trial."""
    moving = [key for key in search.space if key.startswith("data.") and not key.startswith(SAME_VALIDATION)]
    uses = [f"search.metric {search.metric}"] if search.metric.startswith("eval_") else []
    if search.pruning:
        uses.append("pruning (eval_loss)")
    if moving and uses:
        print(
            f"[tunesmith] warning: search.space: {', '.join(moving)} can change the validation rows or the tokens "
            f"they are scored on, so {' and '.join(uses)} may compare trials measured on different data; compare "
            "such values on a metric of fixed data or rows (e.g. a QA accuracy), or search them apart",
            file=sys.stderr,
            flush=True,
        )


def _suggest(trial, key: str, param):
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(key, param.low, param.high, log=param.log)


def run_search(config_path: str, overrides: list[str]) -> dict:
    import optuna

    cfg = load_config(config_path, overrides)
    search = cfg.search
    if search is None or not search.space:
        raise ConfigError("search: add a `search:` section with a `space` of config keys to try (see docs/search.md)")
    if search.metric == "eval_loss" and not (cfg.data.validation or cfg.data.val_split):
        raise ConfigError(
            "search.metric is eval_loss but there is no validation data: set data.validation or data.val_split"
        )
    base = Path(cfg.output_dir)
    for key, param in search.space.items():  # every key and value must be valid: fail before any trial
        probes = param.choices if param.type == "categorical" else [param.low, param.high]
        for probe in probes:
            if param.type == "int":
                probe = int(probe)
            load_config(config_path, [*overrides, f"{key}={json.dumps(probe)}"])
    check_stage(cfg)
    _warn_moving_validation(search)
    sampler = optuna.samplers.TPESampler(seed=search.seed)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if search.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction=search.direction, sampler=sampler, pruner=pruner)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported above, without Optuna's traceback
    rows = []

    def objective(trial):
        values = {key: _suggest(trial, key, param) for key, param in search.space.items()}
        trial_overrides = [
            *overrides,
            *(f"{k}={json.dumps(v)}" for k, v in values.items()),
            f"output_dir={base / f'trial-{trial.number}'}",
            "overwrite_output=true",
        ]
        trial_cfg = load_config(config_path, trial_overrides)
        reporter = _Report(trial, search.pruning)
        print(f"[tunesmith] search trial {trial.number}: {values}", flush=True)
        try:
            with extra_callbacks(reporter):
                result = run_stage(trial_cfg)
        except Exception as exc:
            rows.append(
                {
                    "trial": trial.number,
                    **values,
                    search.metric: None,
                    "output": None,
                    "state": "failed",
                    "reason": f"{type(exc).__name__}: {exc}",
                }
            )
            print(
                f"[tunesmith] search trial {trial.number} failed: {type(exc).__name__}: {exc}",
                file=sys.stderr,
                flush=True,
            )
            raise
        value = result.metrics.get(search.metric)
        row = {
            "trial": trial.number,
            **values,
            search.metric: value,
            "output": str(result.output_dir),
            "state": "pruned" if reporter.pruned else "complete",
        }
        if reporter.pruned and reporter.last:
            epoch, loss = reporter.last
            row["reason"] = f"at epoch {epoch}, eval_loss {loss:.4f} was worse than the median of earlier trials"
        rows.append(row)
        if value is None:
            raise ConfigError(
                f"search.metric `{search.metric}` is not among the run's metrics: "
                f"{', '.join(sorted(k for k, v in result.metrics.items() if isinstance(v, (int, float))))}"
            )
        if reporter.pruned:
            raise optuna.TrialPruned()
        return value

    study.optimize(
        objective, n_trials=search.trials, catch=(Exception,)
    )  # a failed trial is recorded, the search goes on
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        base.mkdir(parents=True, exist_ok=True)
        (base / "search_results.json").write_text(
            json.dumps(
                {"metric": search.metric, "direction": search.direction, "best_trial": None, "trials": rows},
                indent=2,
                ensure_ascii=False,
                default=str,
            )
        )
        raise TunesmithError(no_trial_completed(rows, list(search.space), base / "search_results.json"))
    best = study.best_trial
    best_cfg = load_config(
        config_path,
        [*overrides, *(f"{k}={json.dumps(v)}" for k, v in best.params.items()), f"output_dir={base / 'best'}"],
    )
    best_cfg = best_cfg.model_copy(update={"search": None})
    dump_config(best_cfg, base / "best.yaml")
    summary = {
        "output_dir": str(base),
        "metric": search.metric,
        "direction": search.direction,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "trials": rows,
    }
    (base / "search_results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


def no_trial_completed(rows: list[dict], keys: list[str], results: Path) -> str:
    """The message of a search whose every trial was pruned or failed: what happened to each."""
    lines = [f"search: none of the {len(rows)} trials completed, so there is no best config ({results} lists them):"]
    for row in rows:
        lines.append(
            f"  trial {row['trial']} ({', '.join(f'{k}={row[k]}' for k in keys)}): {row['state']}"
            + (f": {row['reason']}" if row.get("reason") else "")
        )
    failed = sum(row["state"] == "failed" for row in rows)
    lines.append(
        "Fix what the failed trials report (or narrow search.space)"
        if failed
        else "Every trial was pruned: run more trials, or set search.pruning: false"
    )
    return "\n".join(lines)


def results_table(summary: dict) -> str:
    keys = list(summary["best_params"])
    header = ["trial", *keys, summary["metric"], "state"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary["trials"]:
        value = row.get(summary["metric"])
        cells = [
            str(row["trial"]),
            *(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys),
            f"{value:.4f}" if isinstance(value, float) else str(value),
            row["state"] + (" (best)" if row["trial"] == summary["best_trial"] else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
