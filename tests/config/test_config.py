"""Config: YAML + overrides, errors that name file:line and key, help generated from the schema."""

import pytest

from helpers.files import ROOT
from tunesmith.cli import build_parser
from tunesmith.config import describe_keys, load_config
from tunesmith.config.loader import all_keys
from tunesmith.errors import ConfigError


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_overrides_parse_values_and_create_sections(tmp_path):
    path = _write(tmp_path, "output_dir: out/a\ndata:\n  train: a.json\n")
    cfg = load_config(
        path,
        [
            "training.epochs=2.5",
            "lora.target_modules=[q_proj, v_proj]",
            "output_dir=out/b",
            "data.train=b.json",
            "training.gradient_checkpointing=true",
        ],
    )
    assert cfg.training.epochs == 2.5
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.output_dir == "out/b"
    assert cfg.data.train == ["b.json"]
    assert cfg.training.gradient_checkpointing is True
    # YAML reads an unquoted `no` as false; mixed_precision's `no` (exact fp32) is meant, in a file or an override
    assert load_config(path, ["training.mixed_precision=no"]).training.mixed_precision == "no"
    no = _write(tmp_path, "output_dir: out/a\ndata:\n  train: a.json\ntraining:\n  mixed_precision: no\n")
    assert load_config(no).training.mixed_precision == "no"


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    path = _write(tmp_path, "output_dir: out/a\ntraining:\n  epochs: 1\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:4: training.lr: unknown key (did you mean training.learning_rate?)" in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path):
    path = _write(tmp_path, "output_dir: out/a\ntraining:\n  batch_size: eight\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:3: training.batch_size:" in message and "'eight'" in message


def test_override_errors_say_they_come_from_the_command_line(tmp_path):
    path = _write(tmp_path, "output_dir: out/a\n")
    with pytest.raises(ConfigError, match="command-line override: training.epochs: .*'x'"):
        load_config(path, ["training.epochs=x"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["training.epochs"])


def test_method_section_contradiction(tmp_path):
    path = _write(tmp_path, "output_dir: out/a\nmethod: full\nlora:\n  r: 8\n")
    with pytest.raises(ConfigError, match="section `lora` is set but method is `full`"):
        load_config(path)


def test_missing_output_dir_and_bad_stage(tmp_path):
    path = _write(tmp_path, "stage: magic\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "output_dir: required key is missing" in str(err.value)
    assert f"{path}:1: stage:" in str(err.value)


def test_invalid_yaml_reports_line(tmp_path):
    path = _write(tmp_path, "output_dir: out/a\ntraining:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(path)


def test_help_documents_every_key():
    text = describe_keys()
    for key in all_keys():
        assert key in text, key
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "training.learning_rate" in help_text and "Peak learning rate." in help_text


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_example_parses_and_opens_with_its_command(path):
    cfg = load_config(path)
    assert path.read_text().splitlines()[0] == f"# tunesmith train examples/{path.name}"
    for data_file in cfg.data.train + cfg.data.validation + ([cfg.eval.qa] if cfg.eval.qa else []):
        assert (ROOT / data_file).exists(), data_file
