"""The Export tab: `tunesmith export` of an output (merged adapters, a transformers folder, GGUF,
ONNX), and the model registry: `tunesmith registry register / alias / list` of an output."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from tunesmith.errors import TunesmithError
from tunesmith.ui.i18n import text
from tunesmith.ui.jobs import export_options, run_cli

DEFAULT = "(the format's default)"  # --quant left out


def build(ctx, labels) -> None:
    options = export_options()
    with gr.Row():
        model = labels(gr.Dropdown([], label=text("export_model", "en"), elem_id="export-model"), "export_model")
        out = labels(gr.Textbox(label=text("export_out", "en"), elem_id="export-out"), "export_out")
    with gr.Row():
        merge = labels(gr.Checkbox(True, label=text("merge", "en")), "merge")
        fmt = labels(
            gr.Dropdown(list(options["format"]), value=options["format"][0], label=text("format", "en")), "format"
        )
        first = options["format"][0]
        quant = labels(
            gr.Dropdown([DEFAULT, *options["quants"][first]], value=DEFAULT, label=text("quant", "en")), "quant"
        )
        overwrite = labels(gr.Checkbox(False, label=text("overwrite", "en")), "overwrite")
        go = labels(gr.Button(text("export", "en"), variant="primary", elem_id="export-go"), "export", "value")
    log = labels(gr.Textbox(lines=8, label=text("export_log", "en"), elem_id="export-log"), "export_log")
    with gr.Row():  # the registry: the chosen output as the next version of a name; aliases; the list
        reg_name = labels(gr.Textbox(label=text("reg_name", "en"), elem_id="reg-name"), "reg_name")
        register = labels(gr.Button(text("register", "en"), elem_id="reg-go"), "register", "value")
        version = labels(gr.Textbox(label=text("reg_version", "en"), elem_id="reg-version"), "reg_version")
        alias = labels(gr.Textbox("champion", label=text("reg_alias", "en"), elem_id="reg-alias"), "reg_alias")
        set_alias = labels(gr.Button(text("set_alias", "en"), elem_id="alias-go"), "set_alias", "value")
        listing = labels(gr.Button(text("reg_list", "en"), elem_id="reg-list"), "reg_list", "value")
    reg_log = labels(gr.Textbox(lines=8, label=text("reg_log", "en"), elem_id="reg-log"), "reg_log")

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
        args += ["--merge"] * bool(do_merge) + (["--quant", quant_name] if quant_name != DEFAULT else [])
        args += ["--overwrite"] * bool(replace)
        code, output = run_cli(args, ctx.workdir)
        return f"$ tunesmith {' '.join(args)}\n{output.strip()}\n(exit status {code})"

    def shown(args: list[str]) -> str:
        code, output = run_cli(args, ctx.workdir)
        return f"$ tunesmith {' '.join(args)}\n{output.strip()}\n(exit status {code})"

    def do_register(ref, name):
        if not name or not name.strip():
            return "error: give the name to register the output under"
        try:
            source = ctx.guard.resolve(ref, "output to register", kind="dir")
        except TunesmithError as exc:
            return f"error: {exc}"
        return shown(["registry", "register", str(source), "--name", name.strip()])

    def do_alias(name, number, alias_name):
        if not all(v and v.strip() for v in (name, number, alias_name)):
            return "error: give the name, the version and the alias"
        return shown(["registry", "alias", name.strip(), number.strip(), alias_name.strip()])

    def do_list(name):
        return shown(["registry", "list", *([name.strip()] if name and name.strip() else [])])

    register.click(do_register, [model, reg_name], reg_log)
    set_alias.click(do_alias, [reg_name, version, alias], reg_log)
    listing.click(do_list, reg_name, reg_log)
    model.focus(listed, None, model)
    model.change(suggested, model, out)
    go.click(export, [model, out, merge, fmt, quant, overwrite], log)
    # each format offers the quants it takes (export.formats.EXPORTERS)
    fmt.change(lambda name: gr.update(choices=[DEFAULT, *options["quants"][name]], value=DEFAULT), fmt, quant)
