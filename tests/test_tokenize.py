"""Templates and masking: training tokens equal apply_chat_template; only assistant turns train."""

from tunesmith.data.formats import Conversation
from tunesmith.data.formats import Rejects
from tunesmith.data.tokenize import IGNORE_INDEX, MaskOptions, tokenize_all, tokenize_conversation

MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Teal."},
    {"role": "user", "content": "用中文再说一次"},
    {"role": "assistant", "content": "蓝绿色。"},
]


def test_input_ids_equal_apply_chat_template(tokenizer):
    for messages in (MULTI_TURN, MULTI_TURN[1:3]):
        row = tokenize_conversation(tokenizer, Conversation(messages), max_length=4096)
        expected = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert row.input_ids == list(expected)


def test_labels_cover_exactly_the_assistant_replies_and_end_of_turn(tokenizer):
    row = tokenize_conversation(tokenizer, Conversation(MULTI_TURN), max_length=4096)
    # Expected trained spans, built independently: the tokens of each reply plus <|im_end|>.
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = []
    ids = row.input_ids
    for i, message in enumerate(MULTI_TURN):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(MULTI_TURN[:i], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        reply = tokenizer(message["content"], add_special_tokens=False)["input_ids"] + [end]
        assert ids[len(prompt): len(prompt) + len(reply)] == reply
        expected.extend(range(len(prompt), len(prompt) + len(reply)))
    trained = [i for i, label in enumerate(row.labels) if label != IGNORE_INDEX]
    assert trained == expected
    assert all(row.labels[i] == ids[i] for i in trained)
    assert tokenizer.decode([ids[i] for i in trained]) == "Teal.<|im_end|>蓝绿色。<|im_end|>"


def test_train_on_prompt_trains_everything(tokenizer):
    row = tokenize_conversation(tokenizer, Conversation(MULTI_TURN), max_length=4096, train_on_prompt=True)
    assert row.labels == row.input_ids


def test_truncation_drops_rows_without_trained_tokens(tokenizer):
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    short = MULTI_TURN[1:3]
    rejects = Rejects()
    rows = tokenize_all(tokenizer, [Conversation(long_prompt, "a.jsonl:1"), Conversation(short)], MaskOptions(max_length=64), rejects)
    assert rejects.dropped == [{"where": "a.jsonl:1", "reason": "no trained token left after truncation to 64 tokens"}]
    assert len(rows) == 1 and not rejects.entries
    assert len(rows[0].input_ids) <= 64
