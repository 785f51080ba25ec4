"""The Export tab: `tunesmith export` of an output: merged adapters, a transformers folder or GGUF."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from tunesmith.errors import TunesmithError
from tunesmith.ui.i18n import text
from tunesmith.ui.jobs import export_options, run_cli


def build(ctx, labels) -> None:
    options = export_options()
    with gr.Row():
        model = labels(gr.Dropdown([], label=text("export_model", "en"), elem_id="export-model"), "export_model")
        out = labels(gr.Textbox(label=text("export_out", "en"), elem_id="export-out"), "export_out")
    with gr.Row():
        merge = labels(gr.Checkbox(True, label=text("merge", "en")), "merge")
        fmt = labels(gr.Dropdown(list(options["format"]), value=options["format"][0], label=text("format", "en")),
                     "format")
        quant = labels(gr.Dropdown(list(options["quant"]), value="f16", label=text("quant", "en")), "quant")
        overwrite = labels(gr.Checkbox(False, label=text("overwrite", "en")), "overwrite")
        go = labels(gr.Button(text("export", "en"), variant="primary", elem_id="export-go"), "export", "value")
    log = labels(gr.Textbox(lines=8, label=text("export_log", "en"), elem_id="export-log"), "export_log")

    def listed():
        return gr.update(choices=ctx.outputs())

    def suggested(ref):
        return str(Path(ref).with_name(Path(ref).name + "-export")) if ref else ""

    def export(ref, target, do_merge, format_name, quant_name, replace):
        try:
            source = ctx.guard.resolve(ref, "output to export", kind="dir")
            folder = ctx.guard.resolve(target, "folder to write", must_exist=False)
        except TunesmithError as exc:
            return f"error: {exc}"
        args = ["export", str(source), "--out", str(folder), "--format", format_name]
        args += ["--merge"] * bool(do_merge) + (["--quant", quant_name] if format_name == "gguf" else [])
        args += ["--overwrite"] * bool(replace)
        code, output = run_cli(args, ctx.workdir)
        return f"$ tunesmith {' '.join(args)}\n{output.strip()}\n(exit status {code})"

    model.focus(listed, None, model)
    model.change(suggested, model, out)
    go.click(export, [model, out, merge, fmt, quant, overwrite], log)
