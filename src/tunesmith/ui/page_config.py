"""What a config written in the web page may reach: the page's users are not trusted with the
operator's machine (docs/ui.md, "Who may do what").

- Every config key that names a file or folder (`config.paths.INPUT_KEYS`, the files a dataset
  registry lists, `output_dir`, `model.cache_dir`, a `training.resume` checkpoint) must resolve
  inside the page's folders (`PathGuard`).
- No code from a folder the page's users can write runs: `model.trust_remote_code` is refused, and
  lm-eval task folders (which can import Python with `!function`) must lie outside the UI's own
  folder, where uploads and runs go.
- No secret leaves the process: a judge endpoint must be one the operator allowed
  (`tunesmith ui --allow-endpoint URL`), and the key sent to it is read from the variable the
  operator named (`--endpoint-key-env`, default OPENAI_API_KEY), never one the page names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.loader import validate_config
from tunesmith.config.paths import INPUT_KEYS, key_values
from tunesmith.errors import ConfigError
from tunesmith.eval.judge import is_endpoint
from tunesmith.ui.safety import PathGuard

MODEL_KEYS = ("model.name_or_path", "eval.judge.model", "eval.judge.baseline")  # 'default', a hub id or a folder


@dataclass
class PagePolicy:
    """What the operator allowed when starting the page."""

    guard: PathGuard
    own: Path  # the UI's own folder (uploads, runs): the page's users can write there
    endpoints: tuple[str, ...] = field(default_factory=tuple)  # judge endpoints allowed (--allow-endpoint)
    key_env: str = "OPENAI_API_KEY"  # the one variable whose value may go to an allowed endpoint


def _check_judge(cfg, policy: PagePolicy) -> None:
    judge = cfg.eval.judge
    if judge is None or not is_endpoint(judge.model):
        return
    if judge.model.rstrip("/") not in {e.rstrip("/") for e in policy.endpoints}:
        allowed = ", ".join(policy.endpoints) or "none"
        raise ConfigError(
            f"eval.judge.model: the page sends judge prompts only to endpoints its operator allowed (allowed: "
            f"{allowed}); start it with `tunesmith ui --allow-endpoint {judge.model}`, or use a local judge model"
        )
    if judge.api_key_env != policy.key_env:
        raise ConfigError(
            f"eval.judge.api_key_env: the page sends the key in {policy.key_env} (the operator's "
            f"--endpoint-key-env) and no other variable; leave api_key_env at {policy.key_env}"
        )


def check_page_config(raw: dict, policy: PagePolicy) -> None:
    """Refuse, naming the key, a config the page's users may not run (see the module)."""
    cfg = validate_config(raw, {}, "the form")
    guard = policy.guard
    if cfg.model.trust_remote_code:
        raise ConfigError(
            "model.trust_remote_code: the page never runs code from a model folder (its users can upload "
            "folders); run such a model from the command line, where the operator decides"
        )
    _check_judge(cfg, policy)
    registry = {}
    if cfg.data.registry:  # the registry file first, then the files its entries list
        from tunesmith.data.sources import load_registry

        registry = load_registry(guard.resolve(cfg.data.registry, "data.registry", kind="file"))
    for key in INPUT_KEYS:
        for value in key_values(cfg, key):
            value = str(value)
            if key in MODEL_KEYS:
                if not is_endpoint(value):
                    guard.model_ref(value, key)
            elif key in ("data.train", "data.validation") and value in registry:
                for path in registry[value].paths:
                    guard.resolve(path, f"{key} ({value} in data.registry)")
            elif key == "eval.lm_eval.include_path":
                folder = guard.resolve(value, key, kind="dir")
                if folder == policy.own.resolve() or folder.is_relative_to(policy.own.resolve()):
                    raise ConfigError(
                        f"{key}: {value} lies in the page's own folder, where its users upload files; lm-eval "
                        "task files can run Python (`!function`), so the page takes task folders from the "
                        "operator's folders only (e.g. examples/lm_eval)"
                    )
            elif key == "ppo.reward_model":
                guard.resolve(value, key, kind="dir")
            else:
                guard.resolve(value, key)
    guard.resolve(cfg.output_dir, "output_dir", must_exist=False)
    if cfg.model.cache_dir:
        guard.resolve(cfg.model.cache_dir, "model.cache_dir", must_exist=False)
    if cfg.training.resume not in (None, "auto", "restart"):
        guard.resolve(cfg.training.resume, "training.resume", kind="dir")
