"""The Evaluate tab: pick outputs, run `tunesmith eval` on each (its config, the output as --model),
and show the base vs fine-tuned table and eval_report.html (one report over several outputs)."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import gradio as gr

from tunesmith.errors import TunesmithError
from tunesmith.ui.i18n import text
from tunesmith.ui.jobs import run_cli


def base_vs_tuned(output: Path) -> str:
    """The Markdown table of the output's eval_results.json (written by `tunesmith train`)."""
    from tunesmith.eval.run import compare_table

    path = output / "eval_results.json"
    if not path.is_file():
        return (
            f"{output.name}: no eval_results.json (the run measured nothing, or its config set "
            "eval.compare_base: false)"
        )
    results = json.loads(path.read_text())
    if not results.get("base"):
        return f"{output.name}: measured after training only; run the evaluation for a table"
    return f"**{output.name}**\n\n" + compare_table(results["base"], results["fine_tuned"])


def report_frame(path: Path) -> str:
    if not path.is_file():
        return ""
    body = html.escape(path.read_text(encoding="utf-8"), quote=True)
    return f'<iframe srcdoc="{body}" style="width:100%;height:600px;border:0" id="eval-report-frame"></iframe>'


def build(ctx, labels) -> None:
    with gr.Row():
        outputs = labels(
            gr.Dropdown([], multiselect=True, label=text("outputs", "en"), elem_id="eval-outputs"), "outputs"
        )
        refresh = labels(gr.Button(text("refresh", "en"), scale=0), "refresh", "value")
        show = labels(gr.Button(text("show_report", "en"), elem_id="eval-show"), "show_report", "value")
        run = labels(gr.Button(text("run_eval", "en"), variant="primary", elem_id="eval-run"), "run_eval", "value")
    table = labels(gr.Markdown(label=text("compare_table", "en"), elem_id="eval-table"), "compare_table")
    log = gr.Textbox(lines=6, label="tunesmith eval", elem_id="eval-log")
    report = gr.HTML(elem_id="eval-report")

    def listed():
        return gr.update(choices=ctx.outputs())

    def checked(selected) -> list[Path]:
        if not selected:
            raise TunesmithError("choose one or more outputs")
        return [ctx.guard.resolve(s, "output", kind="dir") for s in selected]

    def show_report(selected):
        try:
            folders = checked(selected)
        except TunesmithError as exc:
            return f"**error:** {exc}", "", ""
        tables = "\n\n".join(base_vs_tuned(f) for f in folders)
        if len(folders) == 1:
            return tables, "", report_frame(folders[0] / "eval_report.html")
        out = ctx.home / "evals" / time.strftime("compare-%Y%m%d-%H%M%S")
        code, output = run_cli(["eval", "--compare", *map(str, folders), "--output", str(out)], ctx.workdir)
        return tables, output, report_frame(out / "eval_report.html") if code == 0 else ""

    def evaluate(selected):
        try:
            folders = checked(selected)
        except TunesmithError as exc:
            return f"**error:** {exc}", "", ""
        logs = []
        for folder in folders:
            config = folder / "config.yaml"
            args = (
                ["eval", str(config), "--model", str(folder)] if config.is_file() else ["eval", "--model", str(folder)]
            )
            code, output = run_cli(args, ctx.workdir)
            logs.append(f"$ tunesmith {' '.join(args)}\n{output.strip()}\n(exit status {code})")
        tables = "\n\n".join(base_vs_tuned(f) for f in folders)
        frame = report_frame(folders[0] / "eval_report.html") if len(folders) == 1 else ""
        return tables, "\n\n".join(logs), frame

    refresh.click(listed, None, outputs)
    outputs.focus(listed, None, outputs)
    show.click(show_report, outputs, [table, log, report])
    run.click(evaluate, outputs, [table, log, report])
