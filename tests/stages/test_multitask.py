"""Multi-task learning (`stage: mtl`): task rows, per-task losses, fixed and dynamic task weights."""

import json
import random

import pytest
import torch

from helpers.checks import assert_only_last_layer_trained
from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.data import cache
from tunesmith.data.collate import TaskPaddingCollator
from tunesmith.data.formats import load_conversations
from tunesmith.data.tokenize import MaskOptions, tokenize_all
from tunesmith.errors import DataError

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

WORDS = [
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "indigo",
    "juniper",
    "kelp",
    "lotus",
    "maple",
    "nectar",
    "onyx",
    "pepper",
    "quartz",
    "raven",
    "saffron",
    "tundra",
    "umber",
    "violet",
]


def two_tasks(tmp_path, n: int = 24):
    """`const`: any input, always the answer "Yes." (easy); `map`: input word -> a random word (hard)."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        rows.append({"task": "const", "input": f"Code {rng.choice(WORDS)} {i}?", "output": "Yes."})
        rows.append(
            {"task": "map", "input": f"Map {WORDS[i % len(WORDS)]} {i}", "output": " ".join(rng.sample(WORDS, 3))}
        )
    val = rows[:8]
    return write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "val.jsonl", val)


def mtl_config(tmp_path, model_dir, train, val, mtl: str, steps: int = 16, report: str = "[]"):
    return write_config(
        tmp_path / "mtl.yaml",
        f"""\
stage: mtl
method: lora
output_dir: {tmp_path / "out"}
model: {{name_or_path: {model_dir}}}
data: {{train: {train}, validation: {val}, max_length: 48}}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
mtl: {mtl}
training: {{max_steps: {steps}, learning_rate: 0.01, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 1,
           group_by_length: false, report_to: {report}}}
eval: {{compare_base: false}}
""",
    )


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# --- data ----------------------------------------------------------------------------------------


def test_multitask_rows_are_detected_and_validated_with_file_line_field(tmp_path, tokenizer):
    good = write_jsonl(
        tmp_path / "good.jsonl",
        [
            {"task": "qa", "input": "Who runs the lab?", "output": "Dr. Okonjo.", "system": "Be brief."},
            {"task": "cls", "instruction": "Classify: printer jam", "output": "hardware"},
            {
                "task": "chat",
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            },
            {"instruction": "no task here", "output": "fine for sft"},
        ],
    )
    conversations = load_conversations([good])
    assert [c.meta.get("task") for c in conversations] == ["qa", "cls", "chat", None]
    assert conversations[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who runs the lab?"},
        {"role": "assistant", "content": "Dr. Okonjo."},
    ]
    rows = tokenize_all(tokenizer, conversations, MaskOptions(max_length=64))
    assert [r.task for r in rows] == ["qa", "cls", "chat", None]
    cache.store(tmp_path / "c", "k", rows, {"rejected": [], "dropped": []})
    assert [r.task for r in cache.load_cached(tmp_path / "c", "k")[0]] == ["qa", "cls", "chat", None]

    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"task": "", "input": "q", "output": "a"},
            {"input": "q", "output": "a"},
            {"task": "qa", "output": "a"},
            {"task": 3, "input": "q", "output": "a"},
            {"task": "qa", "input": "q", "output": "  "},
            {"task": "  ", "instruction": "q", "output": "a"},
        ],
    )
    with pytest.raises(DataError) as err:
        load_conversations([bad])
    assert str(err.value) == (
        "6 invalid row(s); fix them and run again:\n"
        f"  {bad}:1:task: empty\n"
        f"  {bad}:2:task: missing required field\n"
        f"  {bad}:3:input: missing required field\n"
        f"  {bad}:4:task: expected a string, got int\n"
        f"  {bad}:5:output: empty\n"
        f"  {bad}:6:task: empty"
    )


def test_stage_mtl_refuses_bad_combinations_at_config_time(tmp_path, tiny_model_dir, capsys):
    train, val = two_tasks(tmp_path, n=4)
    config = mtl_config(tmp_path, tiny_model_dir, train, val, "{weighting: fixed}")

    def error(*overrides):
        assert main(["train", str(config), *overrides]) == 2
        return capsys.readouterr().err.strip()

    plain = write_jsonl(tmp_path / "plain.jsonl", [{"instruction": "q", "output": "a"}])
    assert error(f"data.train={plain}", "data.validation=[]") == (
        f"tunesmith: error: stage mtl: no row of data.train ({plain}) has a task; write {{task, input, output}} "
        "rows or add a `task` field to each row (or use stage: sft)"
    )
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"task": "a", "input": "q", "output": "x"},
            {"task": "b", "input": "q", "output": "y"},
            {"instruction": "q", "output": "z"},
        ],
    )
    assert error(f"data.train={mixed}", "data.validation=[]") == (
        "tunesmith: error: 1 invalid row(s); fix them and run again:\n"
        f"  {mixed}:3:task: missing required field (stage mtl needs a task on every row)"
    )
    one = write_jsonl(tmp_path / "one.jsonl", [{"task": "a", "input": "q", "output": "x"}])
    assert error(f"data.train={one}", "data.validation=[]") == (
        "tunesmith: error: stage mtl: data.train has one task only (`a`); multi-task learning needs at least two "
        "(or use stage: sft)"
    )
    assert error(f"data.validation={mixed}") == (
        "tunesmith: error: 3 invalid row(s); fix them and run again:\n"
        f"  {mixed}:1:task: task `a` does not occur in data.train (tasks: const, map)\n"
        f"  {mixed}:2:task: task `b` does not occur in data.train (tasks: const, map)\n"
        f"  {mixed}:3:task: missing required field (stage mtl needs a task on every row)"
    )
    assert error("mtl.weights={const: 1.0, mapping: 2.0, qa: 1}") == (
        "tunesmith: error: mtl.weights: unknown task(s) `mapping`, `qa`; the tasks in data.train are const, map"
    )
    assert error("data.packing=true").startswith(
        "tunesmith: error: data.packing: stage `mtl` does not support it (a pack mixes rows of several tasks, and mtl "
        "weighs each row's loss by its task); it reads chat rows with a task name"
    )
    assert error("mtl.weighting=uncertainty", "training.nproc=2") == (
        "tunesmith: error: mtl.weighting: uncertainty keeps per-process task state that is not yet synchronised "
        "across training.nproc > 1 processes; use weighting: fixed or nproc: 1"
    )
    assert "`weights` does not apply to weighting `uncertainty`" in error(
        "mtl={weighting: uncertainty, weights: {map: 2}}"
    )
    assert "weights.map: -1.0 is negative; task weights must be >= 0" in error("mtl.weights={map: -1}")
    assert "section `mtl` is set but stage is `sft`" in error("stage=sft")


# --- the loss ------------------------------------------------------------------------------------


def test_fixed_weights_give_the_weighted_sum_of_per_task_losses(tmp_path, tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM, TrainingArguments

    from tunesmith.runtime.task_weights import FixedWeights
    from tunesmith.stages.mtl import MultiTaskTrainer

    train, _ = two_tasks(tmp_path, n=3)
    rows = tokenize_all(tokenizer, load_conversations([train]), MaskOptions(max_length=64))
    tasks = ["const", "map"]
    features = [{"input_ids": r.input_ids, "labels": r.labels, "task_id": tasks.index(r.task)} for r in rows]
    batch = TaskPaddingCollator(tokenizer.pad_token_id)(features)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path / "w"), use_cpu=True, report_to="none")
    trainer = MultiTaskTrainer(model=model, args=args, tasks=tasks, weighting=FixedWeights([0.3, 2.5]))
    model.train()
    loss = trainer.compute_loss(model, dict(batch))

    by_hand = 0.0
    with torch.no_grad():
        for k, weight in enumerate([0.3, 2.5]):
            part = TaskPaddingCollator(tokenizer.pad_token_id)([f for f in features if f["task_id"] == k])
            task_loss = model(
                input_ids=part["input_ids"], attention_mask=part["attention_mask"], labels=part["labels"]
            ).loss
            by_hand += weight * task_loss.item()
    assert abs(loss.item() - by_hand) < 1e-5, (loss.item(), by_hand)


def test_virtual_token_methods_get_the_same_per_task_loss_as_peft_computes(tiny_model_dir, tokenizer, tmp_path):
    """Prompt tuning prepends virtual-token positions to the logits; the stage aligns by the right edge."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    from tunesmith.runtime.task_weights import FixedWeights
    from tunesmith.stages.mtl import MultiTaskTrainer

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32),
        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    )
    features = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9], "task_id": 0},
        {"input_ids": [15, 16, 17], "labels": [-100, 16, 17], "task_id": 1},
        {"input_ids": [25, 26, 27, 28], "labels": [-100, -100, 27, 28], "task_id": 1},
    ]
    collate = TaskPaddingCollator(tokenizer.pad_token_id)
    args = TrainingArguments(output_dir=str(tmp_path / "w"), use_cpu=True, report_to="none")
    trainer = MultiTaskTrainer(model=model, args=args, tasks=["a", "b"], weighting=FixedWeights([0.7, 1.9]))
    model.train()
    loss = trainer.compute_loss(model, dict(collate(features))).item()
    with torch.no_grad():
        parts = [collate([f for f in features if f["task_id"] == k]) for k in (0, 1)]
        by_hand = sum(
            w * model(input_ids=p["input_ids"], attention_mask=p["attention_mask"], labels=p["labels"]).loss.item()
            for w, p in zip([0.7, 1.9], parts)
        )
    assert abs(loss - by_hand) < 1e-5, (loss, by_hand)


# --- training: per-task losses logged, dynamic weights move ----------------------------------------


def test_loss_proportional_weights_move_toward_the_harder_task(tmp_path, tiny_model_dir):
    train, val = two_tasks(tmp_path, n=32)
    config = mtl_config(
        tmp_path, tiny_model_dir, train, val, "{weighting: loss_proportional, ema: 0.8}", report="[tensorboard]"
    )
    assert main(["train", str(config)]) == 0
    out = tmp_path / "out"
    logged = [r for r in records(out) if "loss" in r]
    assert len(logged) == 16
    assert all({"loss/const", "loss/map", "weight/const", "weight/map"} <= set(r) for r in logged)
    assert all(abs(r["weight/const"] + r["weight/map"] - 2.0) < 1e-4 for r in logged)  # normalised to mean 1
    first, last = logged[0], logged[-1]
    # the constant answer is learned, the random mapping is not: the weight moves to `map`
    assert last["loss/const"] < 0.2 * first["loss/const"] and last["loss/map"] > 5 * last["loss/const"], (first, last)
    assert last["weight/map"] > 1.5 > first["weight/map"], (first, last)
    assert last["weight/const"] < 0.5 < first["weight/const"]
    evals = [r for r in records(out) if "eval_loss" in r]
    assert evals and {"eval_loss/const", "eval_loss/map"} <= set(evals[-1])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (out / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.value for e in events.Scalars("train/weight/map")] == pytest.approx([r["weight/map"] for r in logged])
    assert len(events.Scalars("train/loss/const")) == 16 and len(events.Scalars("eval/loss/map")) == len(evals)
    results = json.loads((out / "eval_results.json").read_text())["fine_tuned"]
    assert results["val_loss/const"] < results["val_loss/map"]
    # the same measure, twice (the Trainer's may run under bf16 autocast on CPUs that have it)
    assert results["val_loss/const"] == pytest.approx(evals[-1]["eval_loss/const"], rel=0.05)


def test_uncertainty_weights_are_trained_by_the_optimiser_through_the_trainer(tmp_path, tiny_model_dir):
    train, val = two_tasks(tmp_path, n=32)
    config = mtl_config(tmp_path, tiny_model_dir, train, val, "{weighting: uncertainty, uncertainty_lr: 0.3}")
    assert main(["train", str(config)]) == 0
    logged = [r for r in records(tmp_path / "out") if "loss" in r]
    first, last = logged[0], logged[-1]
    # step 1: both losses are far above exp(s) = 1, so one Adam step raised both log-variances by the lr
    assert first["weight/const"] == pytest.approx(torch.exp(torch.tensor(-0.3)).item(), rel=1e-3)
    assert first["weight/map"] == pytest.approx(first["weight/const"], rel=1e-3)
    # while both losses exceed 1 both weights fall; once the constant answer is learned (loss << 1) its
    # gradient 1 - exp(-s) L turns positive and its weight overtakes the noisy mapping's (Adam's momentum
    # from the large early losses makes this slow; test_..._converge_to_the_inverse_task_loss shows the limit)
    assert all(a["weight/map"] > b["weight/map"] for a, b in zip(logged, logged[1:]))
    assert last["loss/const"] < 0.1 * last["loss/map"], last
    assert last["weight/const"] > last["weight/map"], (first, last)


def test_uncertainty_weights_converge_to_the_inverse_task_loss():
    """Kendall et al.: minimising exp(-s) L + s over s gives exp(-s) = 1 / L (for fixed task losses)."""
    from tunesmith.runtime.task_weights import UncertaintyWeights

    weighting = UncertaintyWeights(3, lr=0.05)
    optimiser = torch.optim.Adam(weighting.parameters(), lr=weighting.lr)
    losses, present = torch.tensor([0.25, 1.0, 4.0]), torch.tensor([True, True, True])
    for _ in range(600):
        optimiser.zero_grad()
        weighting.combine(losses, present).backward()
        optimiser.step()
    assert torch.allclose(weighting.weights(), 1 / losses, rtol=0.02), weighting.weights()
    state = weighting.state_dict()
    restored = UncertaintyWeights(3, lr=0.05)
    restored.load_state_dict(state)
    assert torch.equal(restored.weights(), weighting.weights())


@pytest.mark.parametrize("method,section,lr", [("full", "", 0.003), ("freeze", "freeze: {trainable_layers: 1}", 0.003)])
def test_mtl_trains_with_full_and_freeze_too(tmp_path, tiny_model_dir, method, section, lr):
    # the stage never looks at the method: full and freeze log the same per-task losses and weights
    train, val = two_tasks(tmp_path, n=16)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "mtl.yaml",
        f"""\
stage: mtl
method: {method}
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, validation: {val}, max_length: 48}}
mtl: {{weighting: loss_proportional}}
training: {{max_steps: 8, learning_rate: {lr}, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 1,
           group_by_length: false}}
eval: {{compare_base: false}}
{section}
""",
    )
    assert main(["train", str(config)]) == 0
    logged = [r for r in records(out) if "loss" in r]
    assert len(logged) == 8
    assert all({"loss/const", "loss/map", "weight/const", "weight/map"} <= set(r) for r in logged)
    assert logged[-1]["loss/const"] < 0.5 * logged[0]["loss/const"], (logged[0], logged[-1])
    if method == "freeze":
        assert_only_last_layer_trained(out, tiny_model_dir)
