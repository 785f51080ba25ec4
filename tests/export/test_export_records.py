"""The export formats are one table (export.formats.EXPORTERS): the CLI's --format/--quant choices and
the web page's lists come from it, each writer takes exactly the quants its record lists, and reading
the table (building the command line) loads no model library."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tunesmith.errors import ModelError
from tunesmith.export.formats import BITSANDBYTES, CALIBRATED, EXPORTERS, all_quants, choose_quant, get_exporter


def _choices(option: str) -> tuple:
    from tunesmith.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    export = verbs.choices["export"]
    return tuple(next(a for a in export._actions if option in a.option_strings).choices)


def test_cli_and_web_page_choices_come_from_the_records():
    from tunesmith.ui.jobs import export_options

    assert _choices("--format") == tuple(EXPORTERS) == ("transformers", "gguf", "onnx")
    assert _choices("--quant") == all_quants()
    options = export_options()
    assert options["format"] == tuple(EXPORTERS) and options["quant"] == all_quants()
    assert options["quants"] == {name: e.quants for name, e in EXPORTERS.items()}


def test_each_writer_takes_exactly_its_records_quants():
    from tunesmith.export.gguf import GGML_TYPES
    from tunesmith.export.onnx import MODEL_FILE

    assert set(EXPORTERS["gguf"].quants) == set(GGML_TYPES)
    assert set(EXPORTERS["onnx"].quants) == set(MODEL_FILE)
    assert EXPORTERS["transformers"].quants == BITSANDBYTES + CALIBRATED
    assert [e.default_quant for e in EXPORTERS.values()] == [None, "f16", "f32"]


def test_format_and_quant_refusals_name_what_is_allowed():
    with pytest.raises(ModelError, match="--format tflite: choose one of transformers, gguf, onnx"):
        get_exporter("tflite")
    with pytest.raises(ModelError, match="--quant int8: --format gguf takes f32, f16, bf16, q8_0, q4_0, q4_1"):
        choose_quant(EXPORTERS["gguf"], "int8")
    assert choose_quant(EXPORTERS["onnx"], None) == "f32" and choose_quant(EXPORTERS["transformers"], None) is None


def test_the_export_refuses_a_quant_before_reading_the_source(tmp_path, capsys):
    from tunesmith.cli import main

    assert (
        main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--format", "onnx", "--quant", "q4_1"])
        == 2
    )
    assert "--quant q4_1: --format onnx takes f32, int8, q8_0, q4_0" in capsys.readouterr().err


def test_building_the_command_line_loads_no_model_library():
    code = (
        "import sys; from tunesmith.cli import build_parser; build_parser(); "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
