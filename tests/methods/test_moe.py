"""Method moe on tiny models: a mixture of LoRA experts whose router picks top-k experts per token,
whose load-balancing loss reaches the router through any stage's loss and is logged, that trains
only its experts and routers, saves without the base and reloads to the same logits, and refuses to
merge; and router/expert tuning of a tiny Mixtral, where exactly the chosen parameters change."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.checks import assert_loss_fell, losses
from helpers.configs import load_config, method_config
from helpers.files import write_config
from tunesmith.cli import main
from tunesmith.errors import ConfigError
from tunesmith.methods import apply_method, save_trained
from tunesmith.methods.load import load_for_inference
from tunesmith.methods.moe import LoraExperts, load_moe_lora, target_linears

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _tiny(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path))


def _moe_cfg(tmp_path, *overrides):
    return load_config(None, [f"output_dir={tmp_path}/x", "method=moe", *overrides])


def _step(model, ids, steps=2, lr=0.01):
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def test_router_picks_top_k_and_the_untrained_mixture_is_the_base(tmp_path, tiny_model_dir):
    cfg = _moe_cfg(tmp_path, "moe.experts=4", "moe.top_k=2", "moe.rank=4", "moe.targets=mlp")
    ids = torch.randint(0, 1000, (2, 12))
    base = _tiny(tiny_model_dir).eval()
    assert len(target_linears(base, "attention")) == 8 and len(target_linears(base, "all-linear")) == 14
    assert target_linears(base, ["q_proj", "down_proj"])[1] == "model.layers.0.mlp.down_proj"
    model, report = apply_method(_tiny(tiny_model_dir), cfg)
    # 2 layers x (gate, up: 64 -> 128; down: 128 -> 64): E*r*(in+out) expert weights + E*in router weights
    per_layer = sum(4 * 4 * (i + o) + 4 * i for i, o in ((64, 128), (64, 128), (128, 64)))
    assert report.trainable == 2 * per_layer and 0 < report.percent < 100
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("moe_lora.")
    }
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base(input_ids=ids).logits)  # B = 0: the base exactly
        mixture = model.moe_lora["model/layers/0/mlp/up_proj"]
        x = torch.randn(50, 64)
        probs, gates, chosen = mixture.routing(x)
    assert torch.equal((gates > 0).sum(-1), torch.full((50,), 2))  # exactly k experts per token
    assert torch.allclose(gates.sum(-1), torch.ones(50), atol=1e-6)  # their gates sum to 1
    assert torch.equal(chosen.sort(-1).values, probs.topk(2, -1).indices.sort(-1).values)  # the k most probable
    top = probs.gather(-1, chosen)
    assert torch.equal(gates.gather(-1, chosen), top / top.sum(-1, keepdim=True))  # renormalised probabilities
    assert len({tuple(sorted(c.tolist())) for c in chosen}) > 1  # tokens go to different experts


def test_balance_gradient_reaches_the_router_through_any_loss():
    """With B = 0 the task loss gives the router no gradient, so what it gets is exactly
    balance_weight * d(balance)/d(router): the term is added whatever loss is backpropagated."""
    torch.manual_seed(0)
    mixture = LoraExperts(16, 8, experts=4, top_k=1, rank=2, alpha=4, balance_weight=0.3).train()
    x = torch.randn(3, 7, 16)
    (mixture(x) * torch.randn(3, 7, 8)).sum().backward()  # an arbitrary "stage loss"
    probs, _, chosen = mixture.routing(x)
    expected = torch.autograd.grad(0.3 * mixture.balance_loss(probs, chosen), mixture.router.weight)[0]
    assert expected.abs().sum() > 0 and torch.allclose(mixture.router.weight.grad, expected, atol=1e-7)
    balance = float(mixture.balance_loss(probs, chosen).detach())
    assert mixture.balance_count == 1 and float(mixture.balance_sum) == pytest.approx(balance)
    with torch.no_grad():  # reference or evaluation passes are not recorded
        mixture(x)
    assert mixture.balance_count == 1


def _moe_grads(tiny_model_dir, tmp_path, checkpointing: bool) -> dict:
    torch.manual_seed(0)
    model = _tiny(tiny_model_dir)
    if checkpointing:
        model.gradient_checkpointing_enable()
    cfg = _moe_cfg(
        tmp_path, "moe.dropout=0", "moe.balance_coef=0.5", f"training.gradient_checkpointing={checkpointing}"
    )
    model, _ = apply_method(model, cfg)
    with torch.no_grad():
        for mixture in model.moe_lora.values():
            mixture.lora_B.normal_(0, 0.1)
    model.train()
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_expert_and_router_gradients(tiny_model_dir, tmp_path):
    plain, checkpointed = _moe_grads(tiny_model_dir, tmp_path, False), _moe_grads(tiny_model_dir, tmp_path, True)
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-7) for n in plain)
    assert all(plain[n].abs().sum() > 0 for n in plain if n.endswith("router.weight"))


def _train_collapsed_router(coef: float) -> tuple[torch.Tensor, float]:
    """Experts and router trained on a regression task, the router starting collapsed on expert 0;
    returns each expert's share of 1024 fresh tokens and their balance loss."""
    torch.manual_seed(0)
    mixture = LoraExperts(16, 16, experts=4, top_k=1, rank=4, alpha=4, balance_weight=coef)
    common = torch.nn.functional.normalize(torch.randn(16), dim=0)
    with torch.no_grad():
        mixture.router.weight.normal_(0, 0.01)
        mixture.router.weight[0] += 4 * common  # every token prefers expert 0
    target = torch.randn(16, 16) * 0.3
    optimizer = torch.optim.Adam(mixture.parameters(), lr=0.01)
    for _ in range(100):
        x = 3 * common + 0.5 * torch.randn(256, 16)
        ((mixture(x) - x @ target.T) ** 2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    mixture.eval()
    with torch.no_grad():
        probs, _, chosen = mixture.routing(3 * common + 0.5 * torch.randn(1024, 16))
        share = torch.bincount(chosen.flatten(), minlength=4).float() / chosen.numel()
        return share, float(mixture.balance_loss(probs, chosen))


def test_balance_loss_undoes_a_collapsed_router():
    share_off, balance_off = _train_collapsed_router(0.0)
    share_on, balance_on = _train_collapsed_router(0.1)
    assert share_off.max() > 0.95 and balance_off > 3.0, (share_off, balance_off)  # stays on one expert
    assert share_on.max() < 0.5 and share_on.min() > 0.05 and balance_on < 1.1, (share_on, balance_on)


def test_saved_experts_reload_to_the_same_logits(tmp_path, tiny_model_dir):
    cfg = _moe_cfg(tmp_path, "moe.rank=4", "moe.router_jitter=0.1", "moe.dropout=0.1")
    ids = torch.randint(0, 1000, (2, 10))
    model, _ = apply_method(_tiny(tiny_model_dir), cfg)
    _step(model, ids)
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        assert not torch.allclose(trained, _tiny(tiny_model_dir)(input_ids=ids).logits)
    save_trained(model, cfg, tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["moe_lora.json", "moe_lora.safetensors"]
    reloaded = load_moe_lora(_tiny(tiny_model_dir), tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-6)


def test_moe_sft_through_the_cli_logs_balance_saves_only_experts_and_refuses_merge(
    tmp_path, tiny_model_dir, facts_data, capsys
):
    section = "moe:\n  experts: 4\n  top_k: 2\n  rank: 4\n  alpha: 8\n  balance_coef: 0.05\n"
    config, out = method_config(tmp_path, tiny_model_dir, facts_data, "moe", section)
    assert main(["train", str(config)]) == 0
    assert_loss_fell(out)
    printed = capsys.readouterr().out
    assert "sft/moe on" in printed and "trainable parameters:" in printed and "%)" in printed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    assert train_records and all(0.5 < r["moe_balance_loss"] < 4.0 for r in train_records)
    assert not any("moe_balance_loss" in r for r in records if "eval_loss" in r)

    weights = load_file(str(out / "moe_lora.safetensors"))
    assert not (out / "model.safetensors").exists()
    assert all(
        k.startswith("model/layers/") and k.rsplit(".", 1)[-1] in {"weight", "lora_A", "lora_B"} for k in weights
    )
    assert len(weights) == 2 * 7 * 3  # 2 layers x 7 linears x (router, A, B)
    loaded = load_for_inference(str(out))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for name, param in loaded.model.named_parameters():
        if name.startswith("moe_lora."):
            assert torch.equal(param, weights[name.removeprefix("moe_lora.")]), name
        else:
            assert torch.equal(param, base[name]), name  # the base is bit-identical
    assert any(weights[k].abs().sum() > 0 for k in weights if k.endswith("lora_B"))
    prompt = torch.randint(0, 1000, (1, 6))  # generation routes each new token through the KV cache too
    cached = loaded.model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
    assert torch.equal(cached, loaded.model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False))
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["method"] == "moe" and manifest["trainable_parameters"] == sum(w.numel() for w in weights.values())

    assert main(["export", str(out), "--out", str(tmp_path / "merged"), "--merge"]) == 2
    assert "mixture of LoRA experts cannot be merged" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()


def test_moe_dpo_through_the_cli(tmp_path, tiny_model_dir, dpo_data):
    train, val = dpo_data
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "dpo.yaml",
        f"""\
stage: dpo
method: moe
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, validation: {val}, max_length: 64}}
moe: {{experts: 4, top_k: 1, rank: 4, targets: mlp, dropout: 0.0}}
training: {{epochs: 2, learning_rate: 0.01, batch_size: 4, logging_steps: 1, warmup: 0, scheduler: constant}}
""",
    )
    assert main(["train", str(config)]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["pref_margin"] > results["base"]["pref_margin"] + 1.0, results
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("moe_balance_loss" in r for r in records if "loss" in r) and len(losses(out)) >= 4
    assert (out / "moe_lora.json").is_file() and not (out / "model.safetensors").exists()


# --- MoE base models: routers and/or experts only ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory, tokenizer):
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_local_experts=4,
        num_experts_per_tok=2,
        tie_word_embeddings=True,
        initializer_range=0.3,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mixtral") / "model"
    MixtralForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _tiny_moe_base(arch: str):
    """A 2-layer Mixtral or Qwen3-MoE (4 experts, top 2) with random weights, built in memory."""
    from transformers import MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    shape = dict(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_experts_per_tok=2,
        tie_word_embeddings=True,
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    if arch == "mixtral":
        return MixtralForCausalLM(MixtralConfig(num_local_experts=4, **shape))
    return Qwen3MoeForCausalLM(Qwen3MoeConfig(num_experts=4, moe_intermediate_size=16, head_dim=8, **shape))


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe"])
@pytest.mark.parametrize(
    "train,changed", [("routers", {"gate"}), ("experts", {"experts"}), ("routers+experts", {"gate", "experts"})]
)
def test_moe_base_trains_exactly_its_routers_or_experts(tmp_path, arch, train, changed):
    model, report = apply_method(_tiny_moe_base(arch), _moe_cfg(tmp_path, f"moe.train={train}"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _step(model, torch.randint(0, 1000, (2, 12)), steps=3)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    kinds = {n.split(".")[4] for n in moved}  # model.layers.I.mlp.{gate,experts}.PARAM
    assert kinds == changed and all(n.split(".")[3] == "mlp" for n in moved), moved
    expected = {n for n in before if n.split(".")[3:5] in (["mlp", k] for k in changed)}
    assert moved == expected  # every chosen tensor moved; everything else is bit-identical
    assert report.trainable == sum(before[n].numel() for n in expected)


def test_moe_base_routers_through_the_cli(tmp_path, tiny_mixtral, facts_data):
    config, out = method_config(tmp_path, tiny_mixtral, facts_data, "moe", "moe:\n  train: routers+experts\n", epochs=3)
    assert main(["train", str(config)]) == 0
    trained = load_for_inference(str(out)).model  # (save_pretrained writes Mixtral's per-expert checkpoint names)
    assert trained.config.model_type == "mixtral"
    base = dict(_tiny(tiny_mixtral).named_parameters())
    moved = {n for n, p in trained.named_parameters() if not torch.equal(p, base[n])}
    assert moved and all(".mlp.gate." in n or ".mlp.experts." in n for n in moved), moved


def test_moe_config_errors(tmp_path, tiny_model_dir, facts_data, capsys):
    config, _ = method_config(tmp_path, tiny_model_dir, facts_data, "moe")
    cases = [
        (["moe.top_k=5"], "top_k=5 is more than experts=4"),
        (["moe.train=routers", "moe.rank=4"], "rank apply to train: lora only"),
        (["method=lora", "moe.experts=8"], "section `moe` is set but method is `lora`"),
        (["training.mixed_precision=fp16"], "fp16 loss scaler would not scale the load-balancing gradient"),
        (["moe.targets=[nope]"], "moe.targets: ['nope'] not found in the model"),
        (["moe.train=experts"], "the base model has no mixture-of-experts blocks"),
    ]
    for overrides, message in cases:
        assert main(["train", str(config), *overrides]) == 2, overrides
        assert message in capsys.readouterr().err, overrides
    with pytest.raises(ConfigError, match="does not train a new task head"):
        from tunesmith.models.reward import load_reward_model

        apply_method(load_reward_model(str(tiny_model_dir), 0), _moe_cfg(tmp_path))
