"""GGUF export proven by llama.cpp itself (llama-cpp-python): the embedded SmolLM2 exported as F16,
Q8_0 and Q4_0, loaded by llama.cpp, tokenises the prompts as the Hugging Face tokenizer does and
gives the torch model's greedy tokens (F16 and Q8_0: the same tokens; Q4_0: a stated agreement).

llama-cpp-python is on PyPI as source only: `scripts/setup.sh` builds it once (a few minutes on 2
cores; pip keeps the built wheel in its cache). Skipped where it is not installed."""

import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh builds it)")

from tunesmith.export import export_model  # noqa: E402
from tunesmith.export.compare import llama_greedy  # noqa: E402

pytestmark = pytest.mark.slow  # the real embedded model, exported three times

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name three primary colours."}],
    [{"role": "system", "content": "You are a help desk."}, {"role": "user", "content": "How do I reset my password?"}],
    [{"role": "user", "content": "法国的首都是哪里？"}],
]
NEW_TOKENS = 16
MIN_AGREEMENT = {"f16": 1.0, "q8_0": 0.5, "q4_0": 0.2}  # measured: 56/56, 35/56, 18/56


@pytest.fixture(scope="module")
def torch_replies(default_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(default_model_dir), dtype=torch.float32).eval()
    replies = []
    for messages in PROMPTS:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        replies.append((text, ids, out[0, len(ids) :].tolist()))
    return replies, {
        tokenizer.eos_token_id,
        *(
            [model.generation_config.eos_token_id]
            if isinstance(model.generation_config.eos_token_id, int)
            else model.generation_config.eos_token_id or []
        ),
    }


def matching_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_0"])
def test_llama_cpp_loads_the_export_and_gives_the_torch_models_tokens(
    default_model_dir, torch_replies, tmp_path, quant
):
    replies, stops = torch_replies
    out = export_model(str(default_model_dir), str(tmp_path / quant), format="gguf", quant=quant)
    path = out / f"model-{quant}.gguf"
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False)
    agreed = total = 0
    for text, ids, expected in replies:
        # llama.cpp's tokenizer, built from the GGUF's vocabulary and merges, splits the prompt the same way
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
        got = llama_greedy(llm, stops)(ids, NEW_TOKENS)
        if quant == "f16":
            assert got == expected, (quant, text, got, expected)
        agreed += matching_prefix(got, expected)
        total += len(expected)
    print(f"[llama.cpp {quant}] greedy tokens agreeing with torch before the first difference: {agreed}/{total}")
    # Quantised weights move the logits (Q8_0 by up to ~1.5 on SmolLM2, where the torch model's top two
    # first tokens of "What is the capital of France?" lie 0.08 apart), so near-ties can flip: a floor
    assert agreed / total >= MIN_AGREEMENT[quant], (quant, agreed, total)
