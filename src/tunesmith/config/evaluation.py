"""Sections `eval:` (the suites measured before and after training, with `eval.judge` and
`eval.lm_eval`) and `forgetting:` (replay, L2 pull, general before/after measures)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section, paths_as_lists


class JudgeConfig(Section):
    model: str = Field(
        ...,
        description="The judge: a local model folder ('default', a tunesmith output, a hub id already cached) "
        "read through the logits of its choice tokens, or an OpenAI-compatible endpoint URL (http://HOST:PORT/v1, "
        "`tunesmith serve` included).",
    )
    prompts: str | None = Field(
        None,
        description="Rows {prompt | question | messages, reference?}: both models answer each one (greedy, "
        "eval.max_new_tokens) and the judge compares the two replies in both orders.",
    )
    baseline: str | None = Field(
        None,
        description="With `tunesmith eval`: the model the evaluated one is compared with (default: the base "
        "model of a tunesmith output). `tunesmith train` always compares the fine-tuned model with its base.",
    )
    template: str | None = Field(
        None,
        description="A text file with the judge prompt, holding {question}, {answer_a}, {answer_b} (and "
        "optionally {reference}); default: the built-in pairwise prompt (docs/eval.md).",
    )
    api_model: str | None = Field(
        None,
        description="Endpoint judge: the model name sent (default: the first one the endpoint's /models lists).",
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Endpoint judge: the environment variable holding the API key (unset: no key)."
    )
    timeout: float = Field(120.0, gt=0, description="Endpoint judge: seconds to wait for one verdict.")


class LmEvalConfig(Section):
    tasks: list[str] = Field(
        ..., min_length=1, description="lm-evaluation-harness task names (from include_path or lm-eval's own tasks)."
    )
    include_path: str | None = Field(
        None,
        description="A folder of task YAMLs (local datasets: `dataset_path: json` with "
        "`dataset_kwargs: {data_files: ...}`); see examples/lm_eval/.",
    )
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples per question (default: the task's).")
    limit: int | None = Field(None, gt=0, description="Score at most this many documents per task.")


class EvalConfig(Section):
    qa: str | None = Field(
        None,
        description="JSONL of {question, answers:[...]} rows; a reply is correct when it contains "
        "any answer (case-insensitive).",
    )
    compare_base: bool = Field(
        True, description="With `tunesmith train`: measure the base model first and print a before/after table."
    )
    max_new_tokens: int = Field(48, gt=0, description="Generation length for QA evaluation.")
    batch_size: int = Field(16, gt=0, description="Questions generated per batch.")
    generation: str | None = Field(
        None,
        description="Rows {prompt | messages, reference | references, answers?}: corpus BLEU and chrF "
        "(sacrebleu), ROUGE-1/2/L (rouge-score; jieba for Chinese), exact/key match, LLaMA-Factory's character "
        "BLEU-4; predictions.jsonl is written beside the results (docs/eval.md).",
    )
    mcq: str | None = Field(
        None,
        description="Multiple-choice benchmark in the MMLU/C-Eval CSV layout (a folder with test/ and dev/ "
        "SUBJECT_*.csv of question,A,B,C,D,answer, or one CSV): accuracy from the option letters' logits, "
        "per subject and category.",
    )
    mcq_shots: int = Field(5, ge=0, description="Dev rows of the same subject shown before each question (n-shot).")
    consistency: str | None = Field(
        None,
        description="Rows {id, prompt | question | messages, answers?}: each group of phrasings sharing an "
        "`id` is sampled `consistency_samples` times; agreement rate per group.",
    )
    consistency_samples: int = Field(5, gt=0, description="Replies sampled per consistency row.")
    consistency_temperature: float = Field(0.7, gt=0, description="Sampling temperature of the consistency replies.")
    edge_cases: str | None = Field(
        None,
        description="Probe rows {kind, prompt} (examples/data/edge_cases.jsonl): checks that each reply "
        "comes without a crash, stops before max_new_tokens and emits no template special token.",
    )
    judge: JudgeConfig | None = Field(
        None,
        description="Pairwise judge: {model: FOLDER_OR_URL, prompts: FILE, ...}; the fine-tuned model's "
        "replies against its base's, each pair judged in both orders (docs/eval.md).",
    )
    lm_eval: LmEvalConfig | None = Field(
        None,
        description="lm-evaluation-harness tasks run on the model: {tasks: [...], include_path: DIR}; offline.",
    )


class ForgettingConfig(Section):
    replay: list[str] = Field(
        default_factory=list,
        description="General data (paths or data.registry names, same formats as data.train) replayed during "
        "training so the model keeps its general ability (stages sft and pt).",
    )
    replay_ratio: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Fraction of the built training set taken from `replay`: round(ratio / (1 - ratio) x domain "
        "rows) general rows are mixed in (sampled, repeated if too few; seeded by training.seed). Unused without "
        "replay.",
    )
    replay_answers: Literal["data", "model"] = Field(
        "data",
        description="Whose answers the replay rows carry: `data` trains the answers written in the replay files; "
        "`model` has the starting model answer their prompts first (greedy, cached; replies that do not end "
        "within replay_max_new_tokens are left out), so replay keeps the model's own behaviour instead of "
        "teaching new answers (self-synthesised rehearsal; chat replay, stage sft).",
    )
    replay_max_new_tokens: int = Field(
        96,
        ge=1,
        le=4096,
        description="With replay_answers: model, the longest reply generated for a replay prompt (in tokens).",
    )
    l2: float = Field(
        0.0,
        ge=0,
        description="L2 pull toward the starting weights: coef x sum ||theta - theta_0||^2 over the trainable "
        "parameters is added to every stage's loss (theta_0 = the base weights for full/freeze, the "
        "initialisation of the adapter weights for lora/adapter/prompt methods). Logged as l2_penalty.",
    )
    general_eval: list[str] = Field(
        default_factory=list,
        description="General held-out data (chat/alpaca rows, or raw text: .txt or `text` rows): its loss and "
        "perplexity are measured before and after training and reported next to the other results.",
    )
    general_qa: str | None = Field(
        None,
        description="General questions with key answers (JSONL of {question, answers, task?}, as eval.qa; shipped: "
        "examples/data/general_qa.jsonl, 38 simple questions in English and Chinese): answered with the run's "
        "system prompt before and after training, so a fine-tune that learns its domain but loses general "
        "ability shows it (`general QA accuracy` in the before/after table).",
    )
    warn_general_drop: float = Field(
        0.03,
        ge=0,
        le=1,
        description="Warn after training when the general QA accuracy fell by more than this fraction of its "
        "questions (0.03 of 38 questions: more than one), naming the options that reduce forgetting.",
    )
    warn_perplexity_rise: float = Field(
        0.25,
        ge=0,
        description="Warn after training when the general perplexity (general_eval) rose by more than this "
        "fraction (0.25: +25%).",
    )

    @model_validator(mode="before")
    @classmethod
    def _paths_as_lists(cls, values):
        return paths_as_lists(values, ("replay", "general_eval"))
