"""Property-based tests of what users feed tunesmith: data files and config files.

Every input either loads or raises a `TunesmithError` that names the file (and its line where a
line is at fault); no other exception, no hang, and nothing on disk changes. Inputs: random
bytes, truncated or deeply nested JSON, wrong types, huge fields and numbers, invalid UTF-8,
byte-order marks, CRLF line ends, empty files, symbolic links.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tunesmith.config import load_config  # noqa: E402
from tunesmith.data.formats import load_conversations  # noqa: E402
from tunesmith.data.readers import read_rows  # noqa: E402
from tunesmith.errors import TunesmithError  # noqa: E402

FUZZ = settings(max_examples=40, deadline=10_000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# --- what goes in ------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
KEYS = [
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "messages",
    "conversations",
    "role",
    "content",
    "from",
    "value",
    "task",
    "examples",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "text",
]
rows = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(json_values, st.lists(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4), max_size=3)),
    max_size=5,
)
GOOD = {"instruction": "What is two plus two?", "output": "Four."}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def json_lines(draw) -> bytes:
    """A .jsonl body: good rows, random rows, broken lines, extremes; with CRLF or a BOM sometimes."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["good", "row", "value", "truncated", "deep", "huge", "bytes", "bigint"]))
        if kind == "good":
            lines.append(json.dumps(GOOD).encode())
        elif kind == "row":
            lines.append(json.dumps(draw(rows)).encode())
        elif kind == "value":
            lines.append(json.dumps(draw(json_values)).encode())
        elif kind == "truncated":
            text = json.dumps(draw(rows) or GOOD).encode()
            lines.append(text[: draw(st.integers(0, max(0, len(text) - 1)))])
        elif kind == "deep":
            lines.append(('{"messages": ' + _deep(draw(st.integers(1100, 5000))) + "}").encode())
        elif kind == "huge":
            lines.append(json.dumps({"instruction": "x" * draw(st.integers(10_000, 300_000)), "output": "y"}).encode())
        elif kind == "bigint":
            lines.append(b'{"instruction": "q", "output": "a", "n": ' + b"9" * draw(st.integers(4400, 6000)) + b"}")
        else:
            lines.append(draw(st.binary(max_size=40)))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = newline.join(lines)
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    return body


@st.composite
def json_arrays(draw) -> bytes:
    items = [json.dumps(draw(st.one_of(st.just(GOOD), rows, json_values))) for _ in range(draw(st.integers(0, 4)))]
    text = "[\n" + ",\n".join(items) + "\n]"
    cut = draw(st.sampled_from(["whole", "truncated", "deep", "bom", "crlf"]))
    if cut == "truncated":
        text = text[: draw(st.integers(0, len(text)))]
    elif cut == "deep":
        text = "[" + _deep(draw(st.integers(1100, 5000))) + "]"
    elif cut == "bom":
        text = "\ufeff" + text
    elif cut == "crlf":
        text = text.replace("\n", "\r\n")
    return text.encode()


@st.composite
def csv_files(draw) -> bytes:
    header = ",".join(draw(st.lists(st.sampled_from(KEYS + ['"quoted', "a\x00b"]), min_size=0, max_size=4)))
    lines = [header] + [
        ",".join(draw(st.lists(st.text(max_size=15), max_size=5))) for _ in range(draw(st.integers(0, 4)))
    ]
    body = draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    if draw(st.booleans()):
        body += b"," + b"z" * draw(st.integers(0, 200_000))
    return body


@st.composite
def data_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".json", ".csv", ".txt", ".jsonl.gz", ".json.gz", ".parquet", ".csv.gz"]))
    base = suffix.removesuffix(".gz")
    body = draw(
        st.one_of(
            json_lines()
            if base == ".jsonl"
            else json_arrays()
            if base == ".json"
            else csv_files()
            if base == ".csv"
            else st.binary(max_size=200),
            st.binary(max_size=300),
            st.just(b""),
        )
    )
    if suffix.endswith(".gz") and draw(st.booleans()):
        body = gzip.compress(body)
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]  # a download cut short
    return suffix, body


# --- checks -----------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.is_symlink(), p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
    }


def _loads_or_names_the_file(call, path: Path, shown: str | None = None) -> None:
    folder = path.parent
    before = _snapshot(folder)
    try:
        call()
    except TunesmithError as exc:
        where = re.escape(shown or str(path))
        assert re.search(where + r"(:\d+)?", str(exc)), f"the error does not name {path}: {exc}"
    assert _snapshot(folder) == before, "reading changed the files"


ROLE_LIST = json.dumps({"messages": [{"role": ["user"], "content": "hi"}, {"role": "assistant", "content": "a"}]})
CALL = json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "[" * 2000}]})


@FUZZ
@given(data_files(), st.booleans())
@example((".jsonl", b'{"messages": ' + _deep(3000).encode() + b"}"), False)  # nested too deeply
@example((".jsonl", b'{"instruction": "q", "output": "a", "n": ' + b"9" * 5000 + b"}"), False)  # 5000 digits
@example((".json", ("[" + _deep(3000) + "]").encode()), False)
@example((".json", b"\xef\xbb\xbf[" + json.dumps(GOOD).encode() + b"]"), True)  # BOM
@example((".jsonl", b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n"), False)
@example((".csv", b"\xef\xbb\xbfinstruction,output\r\nq,a\r\n"), False)
@example((".jsonl.gz", gzip.compress(b"x" * 1000)[:12] + b"garbage" * 20), False)  # corrupt deflate stream
@example((".jsonl", ROLE_LIST.encode()), False)  # an unhashable role
@example((".jsonl", CALL.encode()), False)
@example((".txt", b"\xff\xfe"), False)
@example((".parquet", b"PAR1 not really"), False)
@example((".jsonl", b""), False)
def test_data_files_load_or_raise_a_named_error(file, through_link):
    suffix, body = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(body)
        shown = path
        if through_link:  # a symbolic link to the file reads like the file
            shown = Path(tmp) / f"link{suffix}"
            os.symlink(path, shown)
        _loads_or_names_the_file(lambda: read_rows(shown), path, str(shown))
        _loads_or_names_the_file(lambda: load_conversations([shown]), path, str(shown))


def test_folders_with_links_empty_files_and_dangling_links(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps(GOOD) + "\r\n")
    (folder / "empty.jsonl").write_bytes(b"")
    os.symlink(folder / "missing.jsonl", folder / "dangling.jsonl")
    os.symlink(folder, folder / "loop")  # a link back to the folder itself
    before = _snapshot(tmp_path)
    (conversation,) = load_conversations([folder])
    assert conversation.messages[-1]["content"] == "Four."
    with pytest.raises(TunesmithError, match="data file not found"):
        load_conversations([folder / "dangling.jsonl"])
    assert _snapshot(tmp_path) == before


@st.composite
def config_texts(draw) -> bytes:
    kind = draw(st.sampled_from(["keys", "yaml", "bytes", "deep", "huge", "bom", "crlf", "truncated", "types"]))
    good = "output_dir: out/fuzz\nmodel:\n  name_or_path: default\ntraining:\n  epochs: 1\n"
    if kind == "keys":
        sections = ["stage", "method", "output_dir", "model", "data", "training", "lora", "eval", "prompt", "search"]
        raw = draw(st.dictionaries(st.sampled_from(sections), json_values, max_size=5))
        return json.dumps(raw).encode()  # JSON is YAML
    if kind == "yaml":
        return draw(st.text(alphabet=st.sampled_from(list("ab:- \n[]{}'\"#&*!|>%@`,?0.9")), max_size=80)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        return ("output_dir: " + _deep(draw(st.integers(1100, 1500)))).encode()
    if kind == "huge":
        return (good + "data:\n  system: " + "x" * draw(st.integers(10_000, 300_000)) + "\n").encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + good.encode()
    if kind == "crlf":
        return good.replace("\n", "\r\n").encode()
    if kind == "truncated":
        return good.encode()[: draw(st.integers(0, len(good)))]
    value = draw(
        st.sampled_from(
            [
                "2024-01-01",
                "!!binary aGVsbG8=",
                "!!set {a, b}",
                "1e400",
                "9" * 5000,
                "[1, [2]]",
                "{a: 1}",
                "null",
                "~",
                "yes",
                "!!python/object:os.system {}",
                "&a [*a]",
            ]
        )
    )
    key = draw(st.sampled_from(["output_dir", "training.epochs", "data.train", "model", "eval.qa", "stage"]))
    head, _, leaf = key.rpartition(".")
    return (f"output_dir: out/fuzz\n{head}:\n  {leaf}: {value}\n" if head else f"{leaf}: {value}\n").encode()


@FUZZ
@given(config_texts())
@example(b"\xef\xbb\xbfoutput_dir: out/x\n")
@example(b"output_dir: out/\xff\n")
@example(b"output_dir: 2024-01-01\n")
@example(b"output_dir: out/x\ntraining:\n  epochs: " + b"9" * 5000 + b"\n")
@example(b"output_dir: " + _deep(1100).encode())
@example(b"output_dir: !!binary aGVsbG8=\n")
@example(b"output_dir: out/x\nsearch:\n  space: &a [*a]\n")
@example(b"output_dir: out/x\ndata: !!set {a, b}\n")
@example(b"- a\n- b\n")
def test_config_files_load_or_raise_a_named_error(body):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(body)
        _loads_or_names_the_file(lambda: load_config(path), path)


def test_config_edge_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    with pytest.raises(TunesmithError, match=f"{empty}: .*output_dir: required key is missing"):
        load_config(empty)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfoutput_dir: out/x\r\ntraining:\r\n  epochs: 2\r\n")
    assert load_config(bom).training.epochs == 2
    link = tmp_path / "link.yaml"
    os.symlink(bom, link)
    assert load_config(link).output_dir == "out/x"
    with pytest.raises(TunesmithError, match=f"{tmp_path / 'nowhere.yaml'}: config file not found"):
        load_config(tmp_path / "nowhere.yaml")


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine levels of anchors, each a list of nine aliases of the last, stand for 9**9 (387 million)
    strings in 11 lines: refused by name, in well under a second, instead of expanding while the
    config is validated. A config with a few ordinary aliases still loads."""
    lines = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines + ["output_dir: out/x", "data:", "  train: *a9"]) + "\n")
    started = time.perf_counter()
    with pytest.raises(
        TunesmithError,
        match=r"bomb.yaml: invalid YAML: its aliases \(\*name\) expand to "
        r"[\d,]+ values, more than 1,000,000",
    ):
        load_config(bomb)
    assert time.perf_counter() - started < 5
    fine = tmp_path / "fine.yaml"
    fine.write_text("output_dir: out/x\ntraining:\n  learning_rate: &rate 2.0e-4\nforgetting:\n  l2: *rate\n")
    assert load_config(fine).forgetting.l2 == load_config(fine).training.learning_rate == 2.0e-4
