"""`tunesmith ui`: the web page (Gradio). Tabs Data, Train, Evaluate, Chat, Export; English and
Chinese labels. This module and `tabs_*.py` only lay out the page and wire its events; what the page
does is in plain modules tested without a browser (runs, schema_form, jobs, safety, chat_models).

    tunesmith ui                                   # http://127.0.0.1:7860, home ./tunesmith-ui
    tunesmith ui --host 0.0.0.0 --auth alice:pw    # another address needs a password
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the page's server

import gradio as gr

from tunesmith.ui.chat_models import ChatModels
from tunesmith.ui.i18n import LANGUAGES, text
from tunesmith.ui.jobs import finished_outputs
from tunesmith.ui.page_config import PagePolicy
from tunesmith.ui.runs import RunRegistry
from tunesmith.ui.safety import PathGuard


@dataclass
class UiContext:
    home: Path  # the UI's own folder: runs/, uploads/, configs/, data/
    workdir: Path  # where commands run and relative paths start
    roots: list[Path] = field(default_factory=list)  # extra folders typed paths may name
    endpoints: tuple[str, ...] = ()  # judge endpoints the operator allows (--allow-endpoint)
    key_env: str = "OPENAI_API_KEY"  # the variable whose key may go to them (--endpoint-key-env)
    registry: RunRegistry = None  # type: ignore[assignment]
    guard: PathGuard = None  # type: ignore[assignment]
    policy: PagePolicy = None  # type: ignore[assignment]  # what a config written in the page may reach
    chat: ChatModels = None  # type: ignore[assignment]

    def __post_init__(self):
        self.home, self.workdir = Path(self.home).resolve(), Path(self.workdir).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.registry = RunRegistry(self.home, self.workdir)
        self.guard = PathGuard([self.workdir, self.home, *self.roots])
        self.policy = PagePolicy(self.guard, self.home, tuple(self.endpoints), self.key_env)
        self.chat = ChatModels()

    def outputs(self) -> list[str]:
        """Finished outputs: of the registry's runs, and in (or directly under) the working folder's out/."""
        runs = [r.output for r in self.registry.runs()]
        return [str(p) for p in finished_outputs(runs + [self.workdir / "out", self.workdir])]


class Labels:
    """Components whose label (or text) changes with the language: registered as they are made."""

    def __init__(self):
        self.items: list[tuple[gr.components.Component | gr.blocks.BlockContext, str, str]] = []

    def __call__(self, component, key: str, attr: str = "label"):
        self.items.append((component, key, attr))
        return component

    def updates(self, lang: str) -> list:
        return [
            type(c)(**{attr: text(key, lang)}) if isinstance(c, gr.Tab) else gr.update(**{attr: text(key, lang)})
            for c, key, attr in self.items
        ]


def build_app(ctx: UiContext) -> gr.Blocks:
    from tunesmith.ui import tabs_chat, tabs_data, tabs_eval, tabs_export, tabs_train

    labels = Labels()
    with gr.Blocks(title="tunesmith") as app:
        with gr.Row():
            labels(gr.Markdown(text("title", "en")), "title", "value")
            language = labels(
                gr.Radio(
                    list(LANGUAGES.values()),
                    value=LANGUAGES["en"],
                    label=text("language", "en"),
                    elem_id="language",
                    scale=0,
                ),
                "language",
            )
        with gr.Tabs():
            with labels(gr.Tab(text("tab_data", "en"), elem_id="tab-data"), "tab_data"):
                data_file = tabs_data.build(ctx, labels)
            with labels(gr.Tab(text("tab_train", "en"), elem_id="tab-train"), "tab_train"):
                refresh_runs, pick, watched = tabs_train.build(ctx, labels, data_file)
            with labels(gr.Tab(text("tab_eval", "en"), elem_id="tab-eval"), "tab_eval"):
                tabs_eval.build(ctx, labels)
            with labels(gr.Tab(text("tab_chat", "en"), elem_id="tab-chat"), "tab_chat"):
                tabs_chat.build(ctx, labels)
            with labels(gr.Tab(text("tab_export", "en"), elem_id="tab-export"), "tab_export"):
                tabs_export.build(ctx, labels)

        def switch(name):
            lang = next(code for code, shown in LANGUAGES.items() if shown == name)
            return labels.updates(lang)

        language.change(switch, language, [c for c, _, _ in labels.items])
        app.load(refresh_runs, pick, watched)  # a reloaded page finds the runs again (they live on disk)
    return app


def launch(ctx: UiContext, host: str, port: int, auth: tuple[str, str] | None, block: bool = True):
    app = build_app(ctx)
    app.queue(default_concurrency_limit=4)
    return app.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        prevent_thread_lock=not block,
        allowed_paths=[str(ctx.home)],
        ssr_mode=False,
        quiet=False,
        show_error=True,
        css=".trained { background: #b7f0b1; }",
    )
