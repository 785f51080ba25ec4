"""The eval suites are one table (eval.suites.SUITES) that the pre-flight check, the measuring, the
refusals, `tunesmith eval`'s flags and the list of input paths all read. (That every stage's tail,
stages.lifecycle.train_and_save, lists the validation rows it left out is checked by the grpo and ppo
training tests and tests/data/test_data_pipeline.py.)"""

from __future__ import annotations

import pytest

from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.config.paths import INPUT_KEYS, config_inputs
from tunesmith.errors import ConfigError
from tunesmith.eval.chat_template import chat_measures
from tunesmith.eval.suites import DETAIL_KEYS, SUITES, configured
from tunesmith.stages.registry import check_stage

JUDGE = ["eval.judge.model=default", "eval.judge.prompts=examples/data/judge_prompts.jsonl"]
LM_EVAL = ["eval.lm_eval.tasks=[tunesmith_mcq]", "eval.lm_eval.include_path=examples/lm_eval"]


@pytest.mark.parametrize(
    "overrides,key", [(JUDGE, "eval.judge"), (LM_EVAL, "eval.lm_eval"), (["eval.mcq=examples/data/mcq"], "eval.mcq")]
)
def test_every_suite_is_refused_before_training_on_a_stage_that_does_not_generate(overrides, key):
    # the reward model scores replies; no suite can measure it. The judge and lm-eval were missing from
    # the pre-flight list: the judge failed only after training, lm-eval was ignored without a word.
    cfg = load_config("examples/rm_lora.yaml", overrides)
    with pytest.raises(ConfigError, match=rf"^{key}: stage `rm` trains a model that does not generate text"):
        check_stage(cfg)


def test_the_judge_on_a_reward_model_is_refused_by_train_before_anything_loads(tmp_path, capsys):
    assert main(["train", "examples/rm_lora.yaml", f"output_dir={tmp_path / 'out'}", *JUDGE]) == 2
    assert "eval.judge: stage `rm` trains a model that does not generate text" in capsys.readouterr().err
    assert not (tmp_path / "out.partial").exists() and not (tmp_path / "out").exists()


def test_the_table_covers_every_suite_key_of_the_eval_section():
    from tunesmith.config.schema import TunesmithConfig

    eval_fields = set(TunesmithConfig.model_fields["eval"].annotation.model_fields)
    assert set(SUITES) <= eval_fields
    # the other keys of the section are settings of the whole section or of one suite, not suites
    settings = {
        "qa",
        "compare_base",
        "max_new_tokens",
        "batch_size",
        "mcq_shots",
        "consistency_samples",
        "consistency_temperature",
    }
    assert eval_fields - set(SUITES) <= settings, eval_fields - set(SUITES) - settings
    for suite in SUITES.values():
        assert set(suite.reads) <= set(INPUT_KEYS), suite.name  # config_inputs protects what it reads
        assert all(key in DETAIL_KEYS for key in suite.details)


def test_suite_inputs_and_chat_measures_follow_the_table():
    cfg = load_config("examples/sft_lora.yaml", [*JUDGE, *LM_EVAL, "eval.mcq=examples/data/mcq"])
    assert [s.name for s in configured(cfg)] == ["mcq", "judge", "lm_eval"]
    keys = {key for key, _ in config_inputs(cfg)}
    assert {"eval.mcq", "eval.judge.prompts", "eval.lm_eval.include_path"} <= keys
    assert "eval.judge.model" not in keys  # `default` is no local path
    # lm-eval scores raw text; the other two render chats (refused on a base without a template under pt)
    assert [k for k in chat_measures(cfg) if k.startswith("eval.")] == ["eval.mcq", "eval.judge"]


def test_eval_flags_come_from_the_suite_records(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    for suite in SUITES.values():
        assert suite.flags, suite.name
        for flag in suite.flags:
            assert flag.option in text
    assert main(["eval"]) == 2
    assert "--generation, --mcq, --consistency, --edge-cases, --judge, --lm-eval" in capsys.readouterr().err
    assert main(["eval", "--model", "default"]) == 2
    assert (
        "and/or a suite: eval.generation, eval.mcq, eval.consistency, eval.edge_cases, eval.judge, eval.lm_eval"
        in capsys.readouterr().err
    )


def test_eval_flags_set_their_keys():
    from tunesmith.cli import build_parser
    from tunesmith.commands.evaluate import _config

    args = build_parser().parse_args(
        [
            "eval",
            "--model",
            "default",
            "--mcq",
            "examples/data/mcq",
            "--mcq-shots",
            "2",
            "--lm-eval",
            "a",
            "b",
            "--lm-eval-limit",
            "3",
            "--judge",
            "default",
            "--judge-prompts",
            "examples/data/judge_prompts.jsonl",
            "--judge-baseline",
            "default",
            "--batch-size",
            "5",
        ]
    )
    ev = _config(args).eval
    assert (ev.mcq, ev.mcq_shots, ev.lm_eval.tasks, ev.lm_eval.limit, ev.batch_size) == (
        "examples/data/mcq",
        2,
        ["a", "b"],
        3,
        5,
    )
    assert (ev.judge.model, ev.judge.prompts, ev.judge.baseline) == (
        "default",
        "examples/data/judge_prompts.jsonl",
        "default",
    )
