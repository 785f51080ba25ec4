"""Method `moe`: a mixture of LoRA experts with a learned top-k router, or router/expert tuning of a
base model that is already a mixture of experts. `moe.train` chooses:

- `lora` (default, any model). Every targeted linear layer W gets E LoRA experts (A_e: r x in,
  B_e: out x r) and a router R (E x in, no bias). For each token x:
      p = softmax(R x)                      (x times U(1-j, 1+j) noise while training, j = router_jitter)
      g = top-k of p, renormalised          (the k gates sum to 1; the other experts get 0)
      y = W x + alpha/r * sum_e g_e B_e A_e dropout(x)
  B starts at zero, so the untrained mixture is the base model exactly. PEFT 0.21 has no mixture of
  LoRA experts, so this is a small module of our own, built like `methods.bottleneck`: the experts live
  in one `moe_lora` ModuleDict on the model and a forward hook (PyTorch's public
  `register_forward_hook`) on each targeted linear adds their output, so the base's module names and
  weights stay untouched and the experts save and load on their own (safetensors + a small json).
  The experts are computed densely (all E at once, unselected ones weighted 0): each is rank r, so
  the mixture costs what one LoRA of rank E*r costs, with no gather/scatter.
- `routers`, `experts`, `routers+experts` (MoE base models: Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, ...):
  only the base's own routers (the `gate`/`router` of each block that has `experts`) and/or its expert
  weights train; everything else stays frozen; the output is the whole model, like `freeze`.

Load balancing (Switch Transformer / Mixtral): per layer and batch, f_e = share of the token->expert
assignments that go to expert e (so sum_e f_e = 1) and P_e = mean router probability of e;
    balance = E * sum_e f_e * P_e       (1.0 when perfectly balanced, up to E when collapsed).
The method never learns the stage, and each stage computes its loss differently (token
cross-entropy, DPO, KTO, GRPO ...). So the term enters through autograd, the way DeepSeek-MoE's
`AddAuxiliaryLoss` does: the layer's output passes through an identity whose backward also sends
gradient `balance_coef / gradient_accumulation` into `balance`. Whatever loss the stage
backpropagates, the optimiser then minimises loss + balance_coef * mean(balance) over each step's
micro-batches. The fp16 loss scaler would not scale that extra gradient, so fp16 is refused
(bf16 and fp32 are fine). The logged value (`moe_balance_loss` in metrics.jsonl at each logging
step, from `BalanceLogger`) is the mean balance over the layers and micro-batches since the last
log, before the coefficient; the logged `loss` is the stage's own loss.

Not mergeable: the router picks different experts for each token (and with top_k == experts the
gates still depend on the input), so no single weight matrix equals the mixture; export refuses it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import TrainerCallback

from tunesmith.errors import ConfigError, ModelError
from tunesmith.layout import MOE_CONFIG
from tunesmith.models.reward import task_head

MOE_WEIGHTS = "moe_lora.safetensors"
MLP_PARTS = ("mlp", "feed_forward", "ffn")
ROUTER_NAMES = ("gate", "router")


class _WithAuxiliaryLoss(torch.autograd.Function):
    """Identity on `output`; its backward also gives `aux` the gradient `weight`, so training
    minimises (the stage's loss) + weight * aux, whatever that loss is."""

    @staticmethod
    def forward(ctx, output, aux, weight):
        ctx.weight = weight
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, torch.full((), ctx.weight, dtype=torch.float32, device=grad_output.device), None


class LoraExperts(nn.Module):
    """E rank-r LoRA experts and a top-k router for one linear layer; `forward(x)` is the change
    to add to the layer's output."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        experts: int,
        top_k: int,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        router_jitter: float = 0.0,
        balance_weight: float = 0.0,
    ):
        super().__init__()
        self.experts, self.top_k, self.rank = experts, top_k, rank
        self.scaling = alpha / rank
        self.router_jitter = router_jitter
        self.balance_weight = balance_weight  # balance_coef / gradient_accumulation (0: no balancing)
        self.router = nn.Linear(in_features, experts, bias=False)
        # Experts stacked: rows e*r..(e+1)*r of A and columns of B belong to expert e.
        self.lora_A = nn.Parameter(torch.empty(experts * rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, experts * rank))  # zero: starts as the base
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and PEFT initialise A (fan-in)
        self.dropout = nn.Dropout(dropout)
        self.balance_sum: torch.Tensor | None = None  # summed balance values since the last log
        self.balance_count = 0

    def routing(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(router probabilities, dense gates with k non-zeros summing to 1, chosen expert indices)."""
        if self.training and self.router_jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.router_jitter, 1.0 + self.router_jitter)
        probs = F.softmax(self.router(x).float(), dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(probs).scatter(-1, top_i, top_p / top_p.sum(-1, keepdim=True))
        return probs, gates, top_i

    def balance_loss(self, probs: torch.Tensor, top_i: torch.Tensor) -> torch.Tensor:
        """E * sum_e f_e * P_e over the tokens of the batch (1.0 = balanced)."""
        probs = probs.reshape(-1, self.experts)
        share = F.one_hot(top_i.reshape(-1, self.top_k), self.experts).sum(1).float().mean(0) / self.top_k
        return self.experts * (share * probs.mean(0)).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs, gates, top_i = self.routing(x)
        hidden = F.linear(self.dropout(x), self.lora_A).unflatten(-1, (self.experts, self.rank))
        hidden = (hidden * gates.unsqueeze(-1).to(hidden.dtype)).flatten(-2)
        delta = F.linear(hidden, self.lora_B) * self.scaling
        if self.training and torch.is_grad_enabled():  # a training forward (not eval, not a reference pass)
            balance = self.balance_loss(probs, top_i)
            self.balance_sum = balance.detach() + (0 if self.balance_sum is None else self.balance_sum)
            self.balance_count += 1
            if self.balance_weight > 0 and balance.requires_grad:
                delta = _WithAuxiliaryLoss.apply(delta, balance, self.balance_weight)
        return delta


def _add_output(experts: LoraExperts):
    def hook(module, args, output):
        return output + experts(args[0]).to(output.dtype)

    return hook


def target_linears(model, targets) -> list[str]:
    """Full names of the linear layers `moe.targets` selects (never the output head)."""
    head = model.get_output_embeddings()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}
    if targets == "all-linear":
        names = list(linears)
    elif targets in ("attention", "mlp"):

        def chosen(part: str) -> bool:
            part = part.lower()
            return ("attn" in part or "attention" in part) if targets == "attention" else part in MLP_PARTS

        names = [n for n in linears if any(chosen(p) for p in n.split(".")[:-1])]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linears)]
        if missing:
            raise ConfigError(
                f"moe.targets: {missing} not found in the model; its linear layers: "
                f"{sorted({n.rsplit('.', 1)[-1] for n in linears})}"
            )
        names = [n for n in linears if any(n == t or n.endswith("." + t) for t in targets)]
    if not names:
        raise ConfigError(f"moe.targets={targets}: no linear layer selected in this model; list module names instead")
    return names


def attach_moe_lora(
    model,
    names: list[str],
    experts: int,
    top_k: int,
    rank: int,
    alpha: float,
    dropout: float,
    router_jitter: float,
    balance_weight: float = 0.0,
) -> nn.ModuleDict:
    """Add a LoraExperts (all trainable) to each named linear of `model`; returns them."""
    modules = dict(model.named_modules())
    mixtures = nn.ModuleDict()
    for name in names:
        linear = modules[name]
        mixture = LoraExperts(
            linear.in_features, linear.out_features, experts, top_k, rank, alpha, dropout, router_jitter, balance_weight
        )
        mixtures[name.replace(".", "/")] = mixture.to(device=linear.weight.device, dtype=linear.weight.dtype)
        linear.register_forward_hook(_add_output(mixture))
    model.add_module("moe_lora", mixtures)
    return mixtures


# --- MoE base models: their own routers and experts ---------------------------------------------


def moe_blocks(model) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, router, experts) of every block that holds an `experts` module and a `gate`/`router`."""
    blocks = []
    for name, module in model.named_modules():
        experts = getattr(module, "experts", None)
        routers = [getattr(module, n) for n in ROUTER_NAMES if isinstance(getattr(module, n, None), nn.Module)]
        router = routers[0] if routers else None
        if isinstance(experts, nn.Module) and router is not None:
            blocks.append((name, router, experts))
    return blocks


def _train_native(model, train: str):
    blocks = moe_blocks(model)
    if not blocks:
        raise ConfigError(
            f"moe.train={train}: the base model has no mixture-of-experts blocks (a module with "
            "`experts` and a `gate`/`router`); use moe.train=lora to add LoRA experts to a dense model"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    for _, router, experts in blocks:
        for part, wanted in ((router, "routers"), (experts, "experts")):
            if wanted in train.split("+"):
                for param in part.parameters():
                    param.requires_grad_(True)
    return model


# --- the Method hooks -----------------------------------------------------------------------------


def check_moe(cfg) -> None:
    """Config-time refusals (before any model loads)."""
    t, options = cfg.training, cfg.moe
    fp16 = t.mixed_precision == "fp16" or (t.mixed_precision == "auto" and cfg.model.dtype == "float16")
    if options.train == "lora" and options.balance_coef > 0 and fp16:
        raise ConfigError(
            "method moe with fp16 mixed precision: the fp16 loss scaler would not scale the "
            "load-balancing gradient; set training.mixed_precision to bf16 or no, or moe.balance_coef=0"
        )


def apply_moe(model, cfg):
    options = cfg.moe
    if task_head(model):
        raise ConfigError(
            "method moe does not train a new task head (the rm stage's scalar score); use "
            "method lora, freeze or full for a reward model"
        )
    if options.train != "lora":
        return _train_native(model, options.train)
    names = target_linears(model, options.targets)
    for param in model.parameters():
        param.requires_grad_(False)
    attach_moe_lora(
        model,
        names,
        options.experts,
        options.top_k,
        options.rank,
        options.alpha,
        options.dropout,
        options.router_jitter,
        options.balance_coef / cfg.training.gradient_accumulation,
    )
    if cfg.training.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def save_moe(model, directory) -> None:
    """LoRA experts: their weights and routers only (no base weights); MoE base tuning: the model."""
    mixtures = getattr(model, "moe_lora", None)
    if mixtures is None:
        model.save_pretrained(directory)
        return
    from safetensors.torch import save_file

    first = next(iter(mixtures.values()))
    config = {
        "kind": "moe_lora",
        "base_model_name_or_path": model.name_or_path,
        "targets": [key.replace("/", ".") for key in mixtures],
        "experts": first.experts,
        "top_k": first.top_k,
        "rank": first.rank,
        "alpha": first.scaling * first.rank,
        "dropout": first.dropout.p,
        "router_jitter": first.router_jitter,
        "mergeable": False,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in mixtures.state_dict().items()}
    save_file(state, str(directory / MOE_WEIGHTS), metadata={"format": "pt"})
    (directory / MOE_CONFIG).write_text(json.dumps(config, indent=2))


def read_moe_config(directory) -> dict:
    return json.loads((Path(directory) / MOE_CONFIG).read_text())


def load_moe_lora(model, directory):
    """Attach the saved experts and routers of `directory` to `model` (its base) and load them."""
    from safetensors.torch import load_file

    config = read_moe_config(directory)
    missing_targets = sorted(set(config["targets"]) - {n for n, _ in model.named_modules()})
    if missing_targets:
        raise ModelError(
            f"{directory}: the base has no layers {missing_targets[:3]} that these experts were trained on"
        )
    mixtures = attach_moe_lora(
        model,
        config["targets"],
        config["experts"],
        config["top_k"],
        config["rank"],
        config["alpha"],
        config["dropout"],
        config["router_jitter"],
    )
    state = load_file(str(Path(directory) / MOE_WEIGHTS))
    missing, unexpected = mixtures.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{directory}: expert weights do not fit this base (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


class BalanceLogger(TrainerCallback):
    """Adds `moe_balance_loss` (mean balance over layers and micro-batches since the last log) to
    each training log record; it runs before the metrics logger, which writes it to metrics.jsonl."""

    def __init__(self, model):
        self.mixtures = [m for m in model.modules() if isinstance(m, LoraExperts)]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # evaluation records: no training forward to report
            return
        recorded = [m for m in self.mixtures if m.balance_count]
        if recorded:
            total = sum(float(m.balance_sum) for m in recorded)
            logs["moe_balance_loss"] = round(total / sum(m.balance_count for m in recorded), 6)
        for m in recorded:
            m.balance_sum, m.balance_count = None, 0


def moe_callbacks(model, cfg) -> list:
    return [BalanceLogger(model)] if getattr(model, "moe_lora", None) is not None else []
