"""The web page in a real browser: playwright drives the distribution's headless Chromium
(`/usr/bin/chromium`, installed by scripts/setup.sh; no browser is downloaded) against `tunesmith ui`
started on a free port with a tiny model. It checks the data, fills the Train form, watches a run's
progress and loss plot until it finishes, chats with the output beside its base and with a LoRA set (the
output and a second adapter of its base, switched to the second), stops a second run (after
restarting the UI server: the run is found again and still trains), resumes it to the end,
shows the evaluation, exports, and switches to Chinese. Screenshots of each tab go to
$TUNESMITH_UI_SHOTS (default: the test's tmp folder); docs/ui_*.png are copies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.browser import BROWSER_ARGS, CHROMIUM, skip_without_chromium
from helpers.files import write_jsonl
from helpers.serving import free_port

# not marked `trains`: the page, not the numerics, is under test, so the AVX2 pass does not repeat it
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")
skip_without_chromium()


class Server:
    """`tunesmith ui` as a process of its own (so that it can be restarted while a run trains)."""

    def __init__(self, folder: Path, home: Path, roots: list[Path]):
        self.folder, self.home, self.roots, self.port = folder, home, roots, free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        # the registry's store in the test's folder ($TUNESMITH_HOME), not the user's ~/.tunesmith
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TUNESMITH_HOME=str(self.home / "tunesmith-home"))
        env.pop("MLFLOW_TRACKING_URI", None)
        args = [sys.executable, "-m", "tunesmith", "ui", "--port", str(self.port), "--home", str(self.home)]
        for root in self.roots:
            args += ["--root", str(root)]
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(args, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "server.log").read_text()
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the UI server did not answer within 60 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def _box(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _set(page, elem_id: str, value: str) -> None:
    box = _box(page, elem_id)
    box.fill(value)
    box.blur()


def _choose(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    page.locator(f'ul[role="listbox"] li[aria-label="{value}"]').first.click()


def _open_section(page, name: str) -> None:
    """A closed accordion's fields are not drawn: open it (once)."""
    fields = page.locator(f"#section-{name} input, #section-{name} textarea")
    if not (fields.count() and fields.first.is_visible()):
        page.locator(f"#section-{name} .label-wrap").first.click()
        fields.first.wait_for(state="visible", timeout=10000)


def _run_status(page) -> dict:
    status = page.locator("#run-status")
    if not status.count():
        return {}
    return {
        "status": status.get_attribute("data-status"),
        "step": int(status.get_attribute("data-step") or 0),
        "text": status.inner_text(),
    }


def _wait_run(page, until, timeout: float, what: str) -> dict:
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        seen = _run_status(page)
        if seen and until(seen):
            return seen
        page.wait_for_timeout(500)
    log = page.locator("#run-log textarea").input_value()
    message = page.locator("#train-message").inner_text()
    raise AssertionError(f"{what}: last seen {seen}\nmessage: {message}\n{log}")


def test_ui_in_a_browser(tiny_model_dir, tmp_path):
    shots = Path(os.environ.get("TUNESMITH_UI_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    rows = [{"instruction": f"Is item {i} ready?", "output": "yes" if i % 2 else "no"} for i in range(16)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "val.jsonl", rows[:4])
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + '\n{"instruction": "no output"}\n')
    server = Server(tmp_path, tmp_path / "home", [tiny_model_dir.parent])
    server.start()
    try:
        with sync_api.sync_playwright() as play:
            browser = play.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server.url)
            _flow(page, server, tmp_path, tiny_model_dir, train, shots)
            browser.close()
    finally:
        server.stop()
        for run in (tmp_path / "home" / "runs").glob("*/run.json"):  # no training left behind
            pid = json.loads(run.read_text())["pid"]
            try:
                os.killpg(pid, 9)
            except OSError:
                pass


def _second_adapter(first: Path, second: Path) -> None:
    """A copy of LoRA output `first` with its LoRA B matrices negated: another adapter of the same base."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(first, second)
    weights = load_file(str(second / "adapter_model.safetensors"))
    save_file({k: -v if "lora_B" in k else v for k, v in weights.items()}, str(second / "adapter_model.safetensors"))


def _lap(what: str, began: list[float] = []) -> None:  # noqa: B006 - the flow's start, kept between calls
    began.append(began[0] if began else time.monotonic())
    print(f"[ui test] {what}: {time.monotonic() - began[0]:.1f} s", flush=True)


def _ask(page, message: str):
    """Send a chat message; a user turn and a reply appear in both panes (tuned and base)."""
    _set(page, "chat-message", message)
    page.click("#chat-send")
    for pane in ("chat-tuned", "chat-base"):
        page.wait_for_function(f"document.querySelectorAll('#{pane} .message-row').length >= 2", timeout=60000)


def _flow(page, server, tmp_path, tiny, train, shots):
    _lap("page open")
    # --- Data: a bad file names file:line; a good one gets stats and a preview ------------------------
    _set(page, "data-path", "bad.jsonl")
    _set(page, "data-model", str(tiny))
    page.click("#data-check")
    page.wait_for_function(
        "document.querySelector('#data-result textarea').value.includes('bad.jsonl:2')", timeout=60000
    )
    _set(page, "data-path", "train.jsonl")
    page.click("#data-check")
    page.wait_for_selector("#data-preview mark.trained", timeout=90000)
    assert "OK" in _box(page, "data-result").input_value()
    page.screenshot(path=str(shots / "ui_data.png"), full_page=False)
    _lap("data checked")

    # --- Train: the form from the schema, the YAML, a run watched to the end ---------------------------
    page.get_by_role("tab", name="Train").click()
    form = {
        "output_dir": "out/first",
        "model-name_or_path": str(tiny),
        "data-train": "train.jsonl",
        "data-validation": "val.jsonl",
        "data-max_length": "48",
        "training-max_steps": "12",
        "training-batch_size": "4",
        "training-learning_rate": "0.003",
        "training-logging_steps": "2",
        "training-warmup": "0",
    }
    _open_section(page, "training")
    for key, value in form.items():
        _set(page, f"cfg-{key}", value)
    page.wait_for_function("document.querySelector('#yaml-preview').innerText.includes('max_steps: 12')", timeout=20000)
    page.click("#train-start")
    done = _wait_run(page, lambda s: s["status"] in ("finished", "failed"), 120, "the first run")
    assert done["status"] == "finished" and done["step"] == 12, done
    assert (tmp_path / "out" / "first" / "tunesmith.json").is_file()
    page.wait_for_selector("#run-plot canvas, #run-plot svg", timeout=10000)
    page.screenshot(path=str(shots / "ui_train.png"), full_page=False)
    _lap("first run finished")

    # --- Chat: the output and its base, side by side, streamed ----------------------------------------
    page.get_by_role("tab", name="Chat").click()
    _set(page, "chat-model", str(tmp_path / "out" / "first"))
    _ask(page, "Is item 3 ready?")
    page.wait_for_function("!document.querySelector('#chat-send').disabled", timeout=30000)
    _lap("chatted")
    # a LoRA set: the output and a second adapter of the same base (its LoRA B negated), switched to the second
    _second_adapter(tmp_path / "out" / "first", tmp_path / "out" / "first-b")
    for output in ("first", "first-b"):
        _choose(page, "chat-set", str(tmp_path / "out" / output))
    page.click("#chat-set-load")
    page.wait_for_function(
        "document.querySelector('#chat-set-status').innerText.includes('LoRA set loaded')", timeout=60000
    )
    _choose(page, "chat-adapter", "first-b")
    page.click("#chat-clear")
    page.wait_for_function("!document.querySelector('#chat-tuned .message-row')", timeout=10000)
    _ask(page, "Is item 5 ready?")
    page.wait_for_function("!document.querySelector('#chat-send').disabled", timeout=30000)
    assert "first-b" in page.locator("#chat-set-status").inner_text()
    page.screenshot(path=str(shots / "ui_chat.png"), full_page=False)
    _lap("chatted with a LoRA set")

    # --- a second run: started, found again by a restarted UI server, stopped, resumed ---------------
    page.get_by_role("tab", name="Train").click()
    _open_section(page, "training")
    for key, value in {
        "output_dir": "out/second",
        "training-max_steps": "3000",
        "training-logging_steps": "1",
        "data-validation": "",
        "training-save_steps": "1000",
    }.items():
        _set(page, f"cfg-{key}", value)
    page.wait_for_function(
        "document.querySelector('#yaml-preview').innerText.includes('max_steps: 3000')", timeout=20000
    )
    page.click("#train-start")
    _wait_run(page, lambda s: s["status"] == "running" and s["step"] >= 1, 90, "the second run starting")
    # leave the page first: a Gradio page that lost its server polls every 2 s and reloads itself once the
    # server answers again, which aborts a navigation of ours made at that moment (net::ERR_ABORTED)
    page.goto("about:blank")
    server.stop()
    server.start()
    page.goto(server.url)
    page.get_by_role("tab", name="Train").click()
    seen = _wait_run(page, lambda s: "second" in s["text"] and s["status"] == "running", 30, "the run after a restart")
    page.click("#run-stop")
    stopped = _wait_run(page, lambda s: s["status"] == "stopped" and "resumable" in s["text"], 60, "the stop")
    assert seen["step"] <= stopped["step"] < 3000, (seen, stopped)
    _lap(f"second run stopped at step {stopped['step']}")
    page.click("#run-resume")
    _wait_run(page, lambda s: s["status"] == "running" and s["step"] > stopped["step"], 90, "the resumed run")
    log = next((tmp_path / "home" / "runs").glob("*second/train.log")).read_text()
    assert f"resuming from out/second.partial/checkpoint-{stopped['step']}" in log, log[-2000:]
    page.click("#run-stop")  # the resumed run stops as well (checked above); its steps continued the first part
    again = _wait_run(page, lambda s: s["status"] == "stopped", 60, "the second stop")
    metrics = [
        json.loads(line) for line in (tmp_path / "out" / "second.partial" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r["step"] for r in metrics if "loss" in r]
    assert steps == sorted(steps) and steps[-1] == again["step"] and stopped["step"] in steps, steps
    _lap(f"second run resumed and stopped again at step {again['step']}")

    # --- Evaluate: base vs fine-tuned; Export: a merged folder -----------------------------------------
    page.get_by_role("tab", name="Evaluate").click()
    _choose(page, "eval-outputs", str(tmp_path / "out" / "first"))
    page.click("#eval-show")
    page.wait_for_function("document.querySelector('#eval-table').innerText.includes('validation loss')", timeout=30000)
    page.screenshot(path=str(shots / "ui_eval.png"), full_page=False)
    page.get_by_role("tab", name="Export").click()
    _choose(page, "export-model", str(tmp_path / "out" / "first"))
    page.click("#export-go")
    page.wait_for_function(
        "document.querySelector('#export-log textarea').value.includes('exit status')", timeout=90000
    )
    assert "exit status 0" in _box(page, "export-log").input_value()
    assert (tmp_path / "out" / "first-export" / "model.safetensors").is_file()
    # the registry: the output as version 1 of `birds`, the alias `champion` pointed at it
    _set(page, "reg-name", "birds")
    page.click("#reg-go")
    page.wait_for_function("document.querySelector('#reg-log textarea').value.includes('exit status')", timeout=90000)
    assert "exit status 0" in _box(page, "reg-log").input_value(), _box(page, "reg-log").input_value()
    _set(page, "reg-version", "1")
    page.click("#alias-go")
    page.wait_for_function(
        "document.querySelector('#reg-log textarea').value.includes('registry alias')", timeout=60000
    )
    page.wait_for_function("document.querySelector('#reg-log textarea').value.includes('exit status')", timeout=60000)
    assert "exit status 0" in _box(page, "reg-log").input_value(), _box(page, "reg-log").input_value()
    assert (server.home / "tunesmith-home" / "registry").is_dir()
    page.screenshot(path=str(shots / "ui_export.png"), full_page=False)
    _lap("evaluated, exported and registered")

    # --- Chinese labels ------------------------------------------------------------------------------
    page.locator("#language").get_by_text("中文").click()
    page.get_by_role("tab", name="训练").wait_for(timeout=10000)
    page.get_by_role("tab", name="训练").click()
    page.get_by_role("button", name="开始训练").wait_for(timeout=10000)
    page.screenshot(path=str(shots / "ui_train_zh.png"), full_page=False)
