"""serve.batcher: requests generated together give what each gives alone; cancel and queue limits."""

from types import SimpleNamespace

import pytest
import torch

from helpers.serving import Collect
from tunesmith.models.loader import load_causal_lm, load_tokenizer
from tunesmith.serve.batcher import AdapterGone, Batcher, Job, QueueFull, Sampling

pytestmark = pytest.mark.trains  # samples a model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))


def alone(model, tokenizer, prompt_ids, max_tokens):
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return out[0][len(prompt_ids) :].tolist()


def test_batched_greedy_equals_each_request_alone_joining_and_leaving(tiny):
    model, tokenizer = tiny
    prompts = [
        tokenizer(text)["input_ids"]
        for text in (
            "The archive is in",
            "Hi",
            "A much longer prompt about the eastern archive and its keepers",
            "Numbers: one two three",
            "Why?",
        )
    ]
    lengths = [12, 3, 20, 7, 15]  # rows leave at different steps
    eos = set()  # no early stop: every row runs its length, so rows leave the batch one by one
    batcher = Batcher(model, tokenizer.pad_token_id, max_batch=4, max_queue=8)
    try:
        readers = [Collect() for _ in prompts]
        for prompt, length, reader in zip(prompts[:3], lengths, readers):
            batcher.submit(Job(prompt, Sampling(max_tokens=length), eos, reader))
        readers[1].result()  # the second has left; the next two join a batch that is running
        for prompt, length, reader in zip(prompts[3:], lengths[3:], readers[3:]):
            batcher.submit(Job(prompt, Sampling(max_tokens=length), eos, reader))
        for prompt, length, reader in zip(prompts, lengths, readers):
            tokens, end = reader.result()
            assert end == ("end", "length")
            assert tokens == alone(model, tokenizer, prompt, length)
        assert batcher.active == 0 and batcher.queued == 0
    finally:
        batcher.stop()


def test_eos_ends_a_row_and_seeded_sampling_repeats(tiny):
    model, tokenizer = tiny
    prompt = tokenizer("The archive is in")["input_ids"]
    greedy = alone(model, tokenizer, prompt, 6)
    batcher = Batcher(model, tokenizer.pad_token_id, max_batch=4, max_queue=4)
    try:
        reader = Collect()
        batcher.submit(Job(prompt, Sampling(max_tokens=6), {greedy[2]}, reader))
        tokens, end = reader.result()
        assert tokens == greedy[:3] and end == ("end", "stop")
        runs = []
        for _ in range(2):
            readers = [Collect(), Collect()]
            for reader in readers:  # the same seed in one batch and across batches
                batcher.submit(Job(prompt, Sampling(max_tokens=8, temperature=1.5, seed=7), set(), reader))
            runs += [r.result()[0] for r in readers]
        assert all(run == runs[0] for run in runs)
        reader = Collect()
        batcher.submit(Job(prompt, Sampling(max_tokens=3, top_logprobs=2), set(), reader))
        reader.result()
        first = reader.events.queue[0]
        assert first.id == greedy[0] and first.top[0][0] == greedy[0] and len(first.top) == 2
        assert first.logprob == pytest.approx(first.top[0][1]) and first.logprob < 0
    finally:
        batcher.stop()


def test_cancel_frees_the_slot_and_a_full_queue_refuses(tiny):
    model, tokenizer = tiny
    prompt = tokenizer("Hi")["input_ids"]
    batcher = Batcher(model, tokenizer.pad_token_id, max_batch=1, max_queue=1)
    try:
        long, waiting = Collect(), Collect()
        long_job = Job(prompt, Sampling(max_tokens=100000), set(), long)
        batcher.submit(long_job)
        while batcher.active == 0:
            pass
        batcher.submit(Job(prompt, Sampling(max_tokens=2), set(), waiting))
        with pytest.raises(QueueFull, match="--max-queue 1"):
            batcher.submit(Job(prompt, Sampling(max_tokens=2), set(), Collect()))
        long_job.cancel()
        assert long.result()[1] == ("end", "cancelled")
        assert waiting.result()[1] == ("end", "length")
        assert batcher.active == 0
    finally:
        batcher.stop()


class Preferences(torch.nn.Module):
    """Logits that always rank token 0 first, then 1, 2 and 3, each 1.0 apart."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, cache=None, **kwargs):
        logits = torch.tensor([4.0, 3.0, 2.0, 1.0]).expand(input_ids.shape[0], input_ids.shape[1], 4)
        return SimpleNamespace(logits=logits, cache=cache)


@pytest.mark.parametrize(
    "presence,frequency,expected",
    [
        (0.0, 0.0, [0, 0, 0, 0, 0, 0]),
        (0.0, 1.5, [0, 1, 0, 2, 1, 0]),  # each use of a token lowers it by 1.5
        (1.5, 0.0, [0, 1, 0, 0, 0, 0]),  # a token used is lowered by 1.5 once, however often it is used
    ],
)
def test_presence_and_frequency_penalties_follow_openai(presence, frequency, expected):
    batcher = Batcher(Preferences(), 0)
    try:
        reader = Collect()
        batcher.submit(
            Job([1], Sampling(max_tokens=6, presence_penalty=presence, frequency_penalty=frequency), set(), reader)
        )
        assert reader.result()[0] == expected
    finally:
        batcher.stop()


def test_a_job_for_a_removed_adapter_ends_alone_and_the_batch_goes_on(tiny):
    # DELETE /v1/adapters between a request's name check and its submission: the job must not join
    # (PEFT would raise for the unknown adapter and fail every job in the step)
    model, tokenizer = tiny
    prompt = tokenizer("The archive is in")["input_ids"]
    batcher = Batcher(model, tokenizer.pad_token_id, max_batch=4, max_queue=4, known=lambda name: name == "kept")
    try:
        kept, gone = Collect(), Collect()
        batcher.submit(Job(prompt, Sampling(max_tokens=5), set(), kept, adapter="kept"))
        batcher.submit(Job(prompt, Sampling(max_tokens=5), set(), gone, adapter="removed"))
        tokens, end = gone.result()
        assert tokens == [] and end[0] == "error" and isinstance(end[1], AdapterGone) and "`removed`" in str(end[1])
        tokens, end = kept.result()
        assert end == ("end", "length") and tokens == alone(model, tokenizer, prompt, 5)
    finally:
        batcher.stop()


@pytest.mark.parametrize("temperature", [1e-40, 1e-213])
def test_a_tiny_temperature_samples_the_best_token_and_fails_no_one(tiny, temperature):
    """Any temperature in (0, 2] is valid: at 1e-40, scores / temperature overflowed to inf and softmax
    to NaN; at 1e-213 (found by tests/serve/test_serve_fuzz.py) float32 rounds the temperature to 0 and
    the best score became 0 / 0. The failed step ended every request in the batch. Now it picks the best
    token (as greedy does), and a request beside it runs to its end."""
    model, tokenizer = tiny
    prompt = tokenizer("The archive is in")["input_ids"]
    batcher = Batcher(model, tokenizer.pad_token_id, max_batch=4, max_queue=8)
    try:
        beside, tiny_t = Collect(), Collect()
        batcher.submit(Job(prompt, Sampling(max_tokens=12), set(), beside))
        batcher.submit(Job(prompt, Sampling(max_tokens=8, temperature=temperature, seed=1), set(), tiny_t))
        tokens, end = tiny_t.result()
        assert end == ("end", "length") and tokens == alone(model, tokenizer, prompt, 8)
        tokens, end = beside.result()
        assert end == ("end", "length") and tokens == alone(model, tokenizer, prompt, 12)
    finally:
        batcher.stop()
