"""What a config written in the web page may reach (docs/ui.md, "Who may do what"): every path key
inside the page's folders, no code from folders its users can write, no secret sent anywhere the
operator did not allow. One refusal per key, through the page's own check (ui.page_config)."""

from __future__ import annotations

import json

import pytest

from tunesmith.config.paths import INPUT_KEYS
from tunesmith.errors import ConfigError
from tunesmith.ui.page_config import PagePolicy, check_page_config
from tunesmith.ui.safety import PathGuard

ENDPOINT = "http://127.0.0.1:9/v1"


@pytest.fixture
def page(tmp_path):
    """(policy, a config the page accepts, a file outside the page's folders)."""
    work, home, outside = tmp_path / "work", tmp_path / "home", tmp_path / "elsewhere"
    for folder in (work, home / "uploads", outside / "model", work / "tasks"):
        folder.mkdir(parents=True)
    train = work / "train.jsonl"
    train.write_text('{"instruction": "q", "output": "a"}\n')
    (outside / "secret.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    policy = PagePolicy(PathGuard([work, home]), home, endpoints=(ENDPOINT,), key_env="OPENAI_API_KEY")
    raw = {
        "output_dir": str(home / "runs" / "r1"),
        "model": {"name_or_path": "default"},
        "data": {"train": [str(train)]},
    }
    return policy, raw, outside


def _with(raw: dict, key: str, value, **extra) -> dict:
    out = json.loads(json.dumps(raw))
    for dotted, v in {key: value, **extra}.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = v
    return out


# what each key needs beside it for the config to validate
COMPANIONS = {
    "eval.judge.prompts": {"eval.judge.model": "default"},
    "eval.judge.template": {"eval.judge.model": "default"},
    "eval.judge.baseline": {"eval.judge.model": "default"},
    "eval.lm_eval.include_path": {"eval.lm_eval.tasks": ["t"]},
    "ppo.reward_model": {"stage": "ppo"},
}


@pytest.mark.parametrize("key", INPUT_KEYS)
def test_every_path_key_outside_the_pages_folders_is_refused(page, key):
    policy, raw, outside = page
    check_page_config(raw, policy)  # the base config is accepted
    is_list = key in ("data.train", "data.validation", "forgetting.replay", "forgetting.general_eval")
    target = str(outside / "model") if key in ("model.name_or_path", "eval.judge.model", "eval.judge.baseline",
                                               "ppo.reward_model", "eval.lm_eval.include_path") else \
        str(outside / "secret.jsonl")  # fmt: skip
    config = _with(raw, key, [target] if is_list else target, **COMPANIONS.get(key, {}))
    with pytest.raises(ConfigError, match=rf"^{key}: {target} is outside the folders this page may use"):
        check_page_config(config, policy)


def test_output_cache_and_resume_stay_inside(page):
    policy, raw, outside = page
    for key in ("output_dir", "model.cache_dir", "training.resume"):
        with pytest.raises(ConfigError, match=rf"^{key}: .* is outside the folders this page may use"):
            check_page_config(_with(raw, key, str(outside / "x")), policy)
    check_page_config(_with(raw, "training.resume", "auto"), policy)


def test_a_dataset_registry_cannot_reach_outside(page, tmp_path):
    policy, raw, outside = page
    registry = tmp_path / "work" / "datasets.yaml"
    registry.write_text(f"leak:\n  path: {outside / 'secret.jsonl'}\n")
    config = _with(raw, "data.registry", str(registry), **{"data.train": ["leak"]})
    with pytest.raises(ConfigError, match=r"data.train \(leak in data.registry\): .* is outside the folders"):
        check_page_config(config, policy)


def test_no_code_from_folders_the_pages_users_can_write(page, tmp_path):
    policy, raw, _ = page
    with pytest.raises(ConfigError, match=r"^model.trust_remote_code: the page never runs code from a model folder"):
        check_page_config(_with(raw, "model.trust_remote_code", True), policy)
    uploads = str(tmp_path / "home" / "uploads")
    lm_eval = {"eval.lm_eval.tasks": ["t"]}
    with pytest.raises(ConfigError, match=r"^eval.lm_eval.include_path: .* lies in the page's own folder"):
        check_page_config(_with(raw, "eval.lm_eval.include_path", uploads, **lm_eval), policy)
    check_page_config(_with(raw, "eval.lm_eval.include_path", str(tmp_path / "work" / "tasks"), **lm_eval), policy)


def test_no_secret_leaves_through_a_judge(page, monkeypatch):
    policy, raw, _ = page
    monkeypatch.setenv("CLOUD_SECRET", "s3cret")
    with pytest.raises(ConfigError, match=r"^eval.judge.model: the page sends judge prompts only to endpoints"):
        check_page_config(_with(raw, "eval.judge.model", "https://collector.example/v1"), policy)
    with pytest.raises(ConfigError, match=r"^eval.judge.api_key_env: the page sends the key in OPENAI_API_KEY"):
        check_page_config(
            _with(raw, "eval.judge.model", ENDPOINT, **{"eval.judge.api_key_env": "CLOUD_SECRET"}), policy
        )
    check_page_config(_with(raw, "eval.judge.model", ENDPOINT), policy)  # the operator's endpoint and variable
    # a page started without --allow-endpoint sends nothing anywhere
    closed = PagePolicy(policy.guard, policy.own)
    with pytest.raises(ConfigError, match=r"allowed: none"):
        check_page_config(_with(raw, "eval.judge.model", ENDPOINT), closed)


def test_the_only_variable_a_config_can_name_is_the_judges_key():
    """If a config field ever names another environment variable, the page must decide about it too."""
    from tunesmith.config.schema import TunesmithConfig

    def env_fields(model, prefix=""):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            inner = [a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")]
            for sub in ([annotation] if hasattr(annotation, "model_fields") else []) + inner:
                yield from env_fields(sub, f"{prefix}{name}.")
            if name.endswith("_env"):
                yield prefix + name

    assert list(env_fields(TunesmithConfig)) == ["eval.judge.api_key_env"]
