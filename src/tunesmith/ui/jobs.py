"""The short CLI jobs the page runs and shows: `data check|stats|preview`, `eval`, `export`. Each is
the real `tunesmith` command in a process of its own (what the page shows is what a terminal
would), run in the UI's working directory. No Gradio here."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tunesmith.layout import RUN_MANIFEST

JOB_TIMEOUT = 3600.0


def run_cli(args: list[str], workdir: Path, timeout: float = JOB_TIMEOUT) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `tunesmith ARGS`."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tunesmith", *args],
            cwd=workdir,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return 124, f"{exc.output or ''}\n(tunesmith {' '.join(args[:2])}: stopped after {timeout:.0f} s)"
    return done.returncode, done.stdout


def preview_html(text: str) -> str:
    """`data preview --no-color` output as HTML: trained tokens (inside ⟦ ⟧) highlighted."""
    body = html.escape(text)
    body = re.sub(r"⟦(.*?)⟧", r'<mark class="trained">\1</mark>', body, flags=re.S)
    return f'<pre style="white-space: pre-wrap">{body}</pre>'


def data_report(path: Path, model: str, stage: str, workdir: Path, scratch: Path) -> dict:
    """check (text, exit status); when it passes, stats (histogram PNG and text) and a preview of 3
    rendered rows, run side by side."""
    common = [str(path), "--model", model, "--stage", stage]
    code, check = run_cli(["data", "check", *common], workdir)
    report = {"ok": code == 0, "check": check.strip(), "stats_png": None, "preview": ""}
    if code != 0:
        return report
    scratch.mkdir(parents=True, exist_ok=True)
    png = scratch / "data_stats.png"
    with ThreadPoolExecutor(2) as pool:
        stats = pool.submit(run_cli, ["data", "stats", *common, "--out", str(png)], workdir)
        preview = pool.submit(run_cli, ["data", "preview", *common, "-n", "3", "--no-color"], workdir)
        (stats_code, _), (preview_code, preview_text) = stats.result(), preview.result()
    report["stats_png"] = str(png) if stats_code == 0 and png.is_file() else None
    report["preview"] = (
        preview_html(preview_text) if preview_code == 0 else f"<pre>{html.escape(preview_text)}</pre>"
    )  # e.g. a stage whose trainer tokenises: said so
    return report


def export_options() -> dict[str, tuple[str, ...]]:
    """The choices of `tunesmith export` (--format, --quant, and the quants each format takes): the
    export records' own (export.formats.EXPORTERS), so a new format appears in the page without UI code."""
    from tunesmith.export.formats import EXPORTERS, all_quants

    return {
        "format": tuple(EXPORTERS),
        "quant": all_quants(),
        "quants": {name: exporter.quants for name, exporter in EXPORTERS.items()},
    }


def finished_outputs(folders: list[Path]) -> list[Path]:
    """Finished outputs (a run manifest, not .partial) among `folders` and directly under them."""
    found: dict[Path, None] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
            if (candidate / RUN_MANIFEST).is_file() and not candidate.name.endswith(".partial"):
                found.setdefault(candidate.resolve(), None)
    return list(found)
