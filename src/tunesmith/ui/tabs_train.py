"""The Train tab: the config form generated from the schema, the YAML it makes (live, downloadable),
and the runs: start, stop, resume, progress, loss plot and log, refreshed every two seconds."""

from __future__ import annotations

import hashlib

import gradio as gr
import pandas as pd
import yaml

from tunesmith.errors import TunesmithError
from tunesmith.ui.i18n import text
from tunesmith.ui.page_config import check_page_config
from tunesmith.ui.schema_form import (
    NONE_CHOICE,
    config_from_form,
    field_specs,
    form_values,
    section_applies,
    section_descriptions,
)

POLL_SECONDS = 2.0
RUN_COLUMNS = ["run", "status", "progress", "step", "loss", "output"]


def _widget(spec):
    common = {"label": spec.key, "info": spec.description, "elem_id": "cfg-" + spec.key.replace(".", "-")}
    if spec.widget == "checkbox":
        return gr.Checkbox(spec.shown(spec.default), **common)
    if spec.widget == "choice":
        return gr.Dropdown(
            [NONE_CHOICE if c is None else str(c) for c in spec.choices], value=spec.shown(spec.default), **common
        )
    if spec.widget == "yaml":
        return gr.Textbox(spec.shown(spec.default), lines=3, **common)
    return gr.Textbox(spec.shown(spec.default), max_lines=1, **common)


def build(ctx, labels, data_file):
    specs = field_specs()
    descriptions = section_descriptions()
    labels(gr.Markdown(text("form_help", "en")), "form_help", "value")
    widgets, accordions = {}, {}
    with gr.Row():
        with gr.Column(scale=1):
            for spec in specs:
                if not spec.section:
                    widgets[spec.key] = _widget(spec)
            sections = list(dict.fromkeys(s.section for s in specs if s.section))
            for section in sections:
                shown = section_applies(section, "sft", "lora")
                with gr.Accordion(
                    f"{section}: {descriptions.get(section, '')}",
                    open=section in ("model", "data"),
                    visible=shown,
                    elem_id=f"section-{section}",
                ) as accordion:
                    for spec in specs:
                        if spec.section == section:
                            widgets[spec.key] = _widget(spec)
                accordions[section] = accordion
        with gr.Column(scale=1):
            load = labels(gr.File(label=text("load_yaml", "en"), file_types=[".yaml", ".yml"], height=90), "load_yaml")
            preview = labels(
                gr.Code(
                    label=text("yaml_preview", "en"),
                    language="yaml",
                    interactive=False,
                    elem_id="yaml-preview",
                    max_lines=16,
                ),
                "yaml_preview",
            )
            download = labels(
                gr.DownloadButton(text("download_yaml", "en"), elem_id="yaml-download"), "download_yaml", "label"
            )
            start = labels(gr.Button(text("start", "en"), variant="primary", elem_id="train-start"), "start", "value")
            message = gr.Markdown(elem_id="train-message")
            labels(gr.Markdown("### " + text("runs", "en")), "runs", "value")
            progress = gr.HTML(elem_id="run-progress")
            with gr.Row():
                pick = labels(gr.Dropdown([], label=text("run_pick", "en"), elem_id="run-pick", scale=2), "run_pick")
                stop = labels(gr.Button(text("stop", "en"), variant="stop", elem_id="run-stop"), "stop", "value")
                resume = labels(gr.Button(text("resume", "en"), elem_id="run-resume"), "resume", "value")
                refresh = labels(gr.Button(text("refresh", "en")), "refresh", "value")
            plot = labels(
                gr.LinePlot(
                    x="step", y="loss", color="series", label=text("loss_plot", "en"), elem_id="run-plot", height=260
                ),
                "loss_plot",
            )
            table = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, elem_id="runs-table")
            log = labels(
                gr.Textbox(label=text("log", "en"), lines=10, max_lines=10, autoscroll=True, elem_id="run-log"), "log"
            )
    inputs = [widgets[s.key] for s in specs]

    # --- the form -> YAML ------------------------------------------------------------------------
    def render(*values):
        try:
            raw, body = config_from_form(specs, list(values))
        except TunesmithError as exc:
            return "# " + str(exc).replace("\n", "\n# "), gr.update(value=None)
        path = ctx.home / "configs" / f"{hashlib.sha256(body.encode()).hexdigest()[:12]}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        return body, gr.update(value=str(path))

    def sections_shown(stage, method):
        return [gr.update(visible=section_applies(section, stage, method)) for section in accordions]

    def loaded_yaml(file):
        if not file:
            return [gr.update() for _ in specs]
        try:
            raw = yaml.safe_load(open(file, encoding="utf-8").read()) or {}
        except (OSError, yaml.YAMLError) as exc:
            gr.Warning(f"not a YAML config: {exc}")
            return [gr.update() for _ in specs]
        return form_values(specs, raw if isinstance(raw, dict) else {})

    gr.on([w.change for w in inputs], render, inputs, [preview, download], trigger_mode="always_last")
    gr.on(
        [widgets["stage"].change, widgets["method"].change],
        sections_shown,
        [widgets["stage"], widgets["method"]],
        list(accordions.values()),
    )
    load.upload(loaded_yaml, load, inputs)
    data_file.change(lambda p: p, data_file, widgets["data.train"])

    # --- runs -----------------------------------------------------------------------------------
    def refresh_runs(selected, choose: bool = False):
        """The runs table and the chosen run's progress, plot and log. The run list's choice is set
        only on request (`choose`) or when none is chosen: a poll must not undo a choice just made."""
        runs = ctx.registry.runs()
        rows = []
        for run in runs:
            p = ctx.registry.progress(run)
            rows.append(
                [
                    run.id,
                    ctx.registry.status(run),
                    f"{p['fraction']:.0%}",
                    p["step"],
                    "" if p["loss"] is None else f"{p['loss']:.4f}",
                    run.output_dir,
                ]
            )
        ids = [r.id for r in runs]
        if selected not in ids:
            selected, choose = (ids[0] if ids else None), True
        choice = gr.update(choices=ids, value=selected) if choose else gr.update(choices=ids)
        if selected is None:
            return pd.DataFrame(rows, columns=RUN_COLUMNS), choice, "", None, ""
        run = ctx.registry.get(selected)
        p, status = ctx.registry.progress(run), ctx.registry.status(run)
        total = f" / {p['max_steps']}" if p["max_steps"] > 0 else f" (epoch {p['epoch']:.2f})"
        loss = "" if p["loss"] is None else f", loss {p['loss']:.4f}"
        resumable = " (resumable)" if ctx.registry.resumable(run) else ""
        bar = (
            f'<div id="run-status" data-status="{status}" data-step="{p["step"]}">'
            f"<b>{run.id}</b>: {status}{resumable}, "
            f'step {p["step"]}{total}{loss}<br><progress value="{p["fraction"]:.3f}" max="1" '
            f'style="width:100%"></progress></div>'
        )
        points = pd.DataFrame(ctx.registry.loss_points(run), columns=["step", "loss", "series"])
        return pd.DataFrame(rows, columns=RUN_COLUMNS), choice, bar, points, ctx.registry.log_tail(run)

    watched = [table, pick, progress, plot, log]

    def start_run(*values):
        try:
            raw, body = config_from_form(specs, list(values))
            check_page_config(raw, ctx.policy)  # every path key inside the page's folders; no code, no secrets
            run = ctx.registry.start(body)
        except TunesmithError as exc:
            return (f"**error:** {exc}", *refresh_runs(None))
        return (
            f"started `{run.id}` (pid {run.pid}); config {ctx.registry.config_path(run)}",
            *refresh_runs(run.id, True),
        )

    def act(action, selected):
        try:
            if not selected:
                raise TunesmithError("no run chosen")
            run = action(selected)
        except TunesmithError as exc:
            return (f"**error:** {exc}", *refresh_runs(selected))
        return (f"`{run.id}`: {ctx.registry.status(run)}", *refresh_runs(selected))

    start.click(start_run, inputs, [message, *watched])
    stop.click(lambda s: act(ctx.registry.stop, s), pick, [message, *watched])
    resume.click(lambda s: act(ctx.registry.resume, s), pick, [message, *watched])
    refresh.click(refresh_runs, pick, watched)
    pick.input(refresh_runs, pick, watched)
    gr.Timer(POLL_SECONDS).tick(refresh_runs, pick, watched, show_progress="hidden")
    return refresh_runs, pick, watched  # the page calls it on load: a reloaded page finds the runs again
