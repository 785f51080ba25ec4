"""Consistency (eval.consistency) and edge-case probes (eval.edge_cases): rows grouped by id and
sampled, agreement per group; probes that must not crash, must stop and must not write template
tokens, with failure rates per check."""

from __future__ import annotations

import pytest

from helpers.files import ROOT, write_jsonl
from tunesmith.errors import DataError
from tunesmith.eval.consistency import agreement, label, load_consistency
from tunesmith.eval.edge_cases import check, load_probes, special_strings
from tunesmith.eval.generate import Generated

EXAMPLES = ROOT / "examples/data"


def test_labels_and_agreement():
    keys = ["Paris"]
    labels = [label(r, keys, i) for i, r in enumerate(["It is Paris.", "paris!", "Lyon", "I don't know"])]
    assert labels[0] == labels[1] and labels[2] != labels[3]  # replies without a key never agree
    assert agreement(labels) == 0.5
    assert label("Hello, there!", None, 0) == label("hello there", None, 1)  # normalised text without keys
    assert agreement(["a", "a", "a"]) == 1.0


def test_shipped_files_and_row_errors(tmp_path):
    groups = {r.group for r in load_consistency(str(EXAMPLES / "consistency.jsonl"))}
    assert {"capital-france", "zh-capital", "say-hello"} <= groups
    probes = load_probes(str(EXAMPLES / "edge_cases.jsonl"))
    kinds = {p.kind for p in probes}
    assert {
        "empty",
        "whitespace",
        "near_context_limit",
        "other_language",
        "out_of_domain",
        "prompt_injection",
        "repeated_tokens",
        "malformed_unicode",
    } <= kinds
    assert any(
        "\udcff" in (p.messages or [{}])[-1].get("content", "") for p in probes
    )  # a lone surrogate survives JSON
    bad = write_jsonl(
        tmp_path / "c.jsonl", [{"prompt": "Q"}, {"id": "a", "prompt": ""}, {"id": 1, "prompt": "Q", "answers": [""]}]
    )
    with pytest.raises(DataError) as info:
        load_consistency(str(bad))
    assert f"{bad}:1:id: missing" in str(info.value) and f"{bad}:2:prompt:" in str(info.value)
    assert f"{bad}:3:answers:" in str(info.value)
    bad = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}, {"kind": "long", "fill": "ab", "context_share": 2}])
    with pytest.raises(DataError) as info:
        load_probes(str(bad))
    assert f"{bad}:1:kind: missing" in str(info.value) and f"{bad}:2:context_share:" in str(info.value)


def test_checks(tokenizer):
    specials = special_strings(tokenizer)
    assert "<|im_start|>" in specials and "<|im_end|>" in specials
    ok = Generated("Hello.", "Hello.", 3, True)
    assert check(ok, None, specials) == {"crash": False, "no_stop": False, "special_tokens": False}
    leaked = Generated("Hello.", "Hello.<|im_start|>user", 9, True)
    assert check(leaked, None, specials)["special_tokens"]
    assert check(Generated("a a a", "a a a", 48, False), None, specials)["no_stop"]
    assert check(None, "TypeError: boom", specials)["crash"]


@pytest.mark.trains
def test_probes_and_consistency_on_a_tiny_model(tiny_model_dir, tmp_path):
    import torch

    from tunesmith.eval.consistency import consistency_metrics
    from tunesmith.eval.edge_cases import edge_case_metrics
    from tunesmith.methods.load import load_for_inference

    loaded = load_for_inference(str(tiny_model_dir))
    model, tokenizer = loaded.model, loaded.tokenizer
    model.config.max_position_embeddings = 256  # a short context: the fill probe is built to fit it
    probes = edge_case_metrics(model, tokenizer, str(EXAMPLES / "edge_cases.jsonl"), None, 4, 8)
    details = probes["edge_details"]
    assert probes["edge_fail/crash"] == 0.0  # malformed unicode included: invalid text is replaced, not fatal
    long = next(d for d in details if d["kind"] == "near_context_limit")
    assert long["error"] is None and long["tokens"] >= 1
    # a random tiny model rarely emits EOS within 4 tokens: no_stop is counted per probe
    assert probes["edge_fail/no_stop"] == sum("no_stop" in d["failed"] for d in details) / len(details) > 0
    assert probes["edge_probes"] == len(load_probes(str(EXAMPLES / "edge_cases.jsonl")))

    rows = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "g", "prompt": "Where is the archive?"}] * 2
        + [{"id": "h", "prompt": "Who runs the lab?", "answers": ["Okonjo"]}],
    )
    cold = consistency_metrics(model, tokenizer, str(rows), None, 6, 8, 4, 1e-4, seed=0)
    assert cold["consistency_details"][0]["agreement"] == 1.0  # near-greedy: one phrasing, one answer
    hot = consistency_metrics(model, tokenizer, str(rows), None, 6, 8, 4, 50.0, seed=0)
    assert hot["consistency_details"][0]["agreement"] < 1.0  # near-uniform sampling disagrees
    assert hot["consistency_groups"] == 2 and hot["consistency_key_rate"] == 0.0
    torch.manual_seed(1)
    again = consistency_metrics(model, tokenizer, str(rows), None, 6, 8, 4, 50.0, seed=0)
    assert again["consistency_details"] == hot["consistency_details"]  # seeded by training.seed
