"""The Data tab: upload or name a file, `tunesmith data check` (file:line errors), the token-length
histogram and rendered rows with the trained tokens marked."""

from __future__ import annotations

import gradio as gr

from tunesmith.config.stages import STAGE_NAMES
from tunesmith.errors import TunesmithError
from tunesmith.ui.i18n import text
from tunesmith.ui.jobs import data_report
from tunesmith.ui.safety import store_upload


def build(ctx, labels) -> gr.Textbox:
    """Returns the data-path box (the Train tab offers its file)."""
    with gr.Row():
        upload = labels(
            gr.File(
                label=text("upload", "en"),
                file_types=[".json", ".jsonl", ".csv", ".parquet", ".gz"],
                elem_id="data-upload",
            ),
            "upload",
        )
        with gr.Column():
            path = labels(gr.Textbox(label=text("data_path", "en"), elem_id="data-path"), "data_path")
            model = labels(
                gr.Textbox("default", label=text("tokenizer_model", "en"), elem_id="data-model"), "tokenizer_model"
            )
            stage = labels(gr.Dropdown(list(STAGE_NAMES), value="sft", label=text("data_stage", "en")), "data_stage")
            check = labels(gr.Button(text("check", "en"), variant="primary", elem_id="data-check"), "check", "value")
    result = labels(gr.Textbox(label=text("check_result", "en"), lines=8, elem_id="data-result"), "check_result")
    with gr.Row():
        stats = labels(gr.Image(label=text("stats_plot", "en"), type="filepath", elem_id="data-stats"), "stats_plot")
        with gr.Column():
            labels(gr.Markdown(text("preview", "en")), "preview", "value")
            preview = gr.HTML(elem_id="data-preview")

    def uploaded(file):
        if not file:
            return gr.update()
        return str(store_upload(file, ctx.home / "uploads"))

    def run_check(path_text, model_text, stage_name):
        try:
            data = ctx.guard.resolve(path_text, "data file")
            model_ref = ctx.guard.model_ref(model_text)
        except TunesmithError as exc:
            return f"error: {exc}", None, ""
        report = data_report(data, model_ref, stage_name, ctx.workdir, ctx.home / "data" / data.stem)
        return report["check"], report["stats_png"], report["preview"]

    upload.upload(uploaded, upload, path)
    check.click(run_check, [path, model, stage], [result, stats, preview])
    return path
