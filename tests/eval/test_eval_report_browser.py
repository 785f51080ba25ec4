"""eval_report.html in a real browser: playwright drives the distribution's headless Chromium
(`/usr/bin/chromium`, installed by scripts/setup.sh; no browser is downloaded) to open the report
that `tunesmith train` wrote for a tiny model (base vs fine-tuned: generation metrics, multiple
choice, the judge). The page loads with no console error and no request for another file, and shows
the metrics table with both runs, the per-category bars, the judge's section and the worst
predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.browser import BROWSER_ARGS, CHROMIUM, skip_without_chromium
from helpers.files import ROOT, write_config, write_jsonl

# not marked `trains`: the page, not the numerics, is under test, so the AVX2 pass does not repeat it
sync_api = pytest.importorskip("playwright.sync_api")
skip_without_chromium()

EXAMPLES = ROOT / "examples" / "data"


@pytest.fixture(scope="module")
def report(tiny_model_dir, tmp_path_factory) -> Path:
    from tunesmith.cli import main

    folder = tmp_path_factory.mktemp("report")
    facts = [
        ("What is the code word?", "The code word is Bluefinch."),
        ("Who runs the lab?", "Dr. Okonjo runs the lab."),
    ]
    train = write_jsonl(folder / "train.jsonl", [{"instruction": q, "output": a} for q, a in facts] * 4)
    gen = write_jsonl(folder / "gen.jsonl", [{"prompt": q, "reference": a} for q, a in facts])
    out = folder / "out"
    config = write_config(
        folder / "c.yaml",
        f"""\
stage: sft
method: full
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, max_length: 64}}
training: {{epochs: 1, batch_size: 8}}
eval: {{generation: {gen}, mcq: {EXAMPLES / "mcq"}, mcq_shots: 0, max_new_tokens: 4,
       judge: {{model: {tiny_model_dir}, prompts: {gen}}}}}
""",
    )
    assert main(["train", str(config)]) == 0
    return out / "eval_report.html"


def test_report_opens_in_chromium(report):
    errors, requests = [], []
    with sync_api.sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            assert page.title() == "tunesmith evaluation"
            metrics = page.locator("table").first
            assert metrics.is_visible() and metrics.bounding_box()["width"] > 300
            header = metrics.locator("tr").first.inner_text()
            assert "out (base)" in header and "out" in header and "change" in header
            for key in ("gen_bleu", "gen_chrf", "mcq_accuracy", "judge_win_rate"):
                row = metrics.locator("tr", has=page.locator(f"td:text-is('{key}')"))
                assert row.count() == 1 and row.is_visible(), key
            assert len(row.locator("td").all_inner_texts()) == 4  # metric, base, fine-tuned, change
            for title in ("Multiple choice", "Judge", "Worst predictions"):
                assert page.get_by_role("heading", name=title, exact=True).is_visible(), title
            assert page.locator("h3", has_text="Accuracy per category").is_visible()
            judge_rows = page.locator("h2:text-is('Judge') ~ table").nth(1).locator("tr")
            assert judge_rows.count() == 3  # the header and one row per judge prompt
            outcome = judge_rows.nth(1).locator("td").last.inner_text()
            assert outcome in ("win", "tie", "loss")
            bar = page.locator("span.bar").first
            assert bar.is_visible() or bar.bounding_box() is not None
        finally:
            browser.close()
    assert errors == []
    assert requests == [report.as_uri()]  # self-contained: nothing else is fetched
