"""The web page's training runs: each one a `tunesmith train` process of its own, kept in a registry
on disk so that runs go on, and are found again, when the page reloads or the UI server restarts.

    registry = RunRegistry(Path("~/.tunesmith-ui").expanduser(), workdir=Path.cwd())
    run = registry.start(yaml_text)        # writes HOME/runs/ID/config.yaml, starts the process
    registry.status(run)                   # running | stopping | finished | stopped | failed
    registry.stop(run.id)                  # SIGTERM: the run saves a checkpoint and ends (.partial kept)
    registry.resume(run.id)                # the same config again with training.resume=auto

A run's folder holds `config.yaml` (exactly what runs), `run.json` (process id and start time, the
output folder, the command, whether a stop was asked) and `train.log` (the process's output). The
process is started in a session of its own, so it outlives the UI server; after a restart it is
recognised by its pid *and* its start time (a reused pid is not mistaken for it). Progress and the
loss curve come from the run's own `metrics.jsonl` (runtime.logging_callbacks.MetricsLogger), read
from OUTPUT.partial/ while it trains and OUTPUT/ once it is done. Nothing here imports Gradio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tunesmith.errors import ConfigError
from tunesmith.layout import RUN_MANIFEST, partial_folder

RUN_FILE, CONFIG_FILE, LOG_FILE = "run.json", "config.yaml", "train.log"
CHECKPOINT_MANIFEST, CHECKPOINT_PREFIX = "checkpoint.json", "checkpoint-"  # runtime.checkpoints' names


@dataclass
class Run:
    id: str
    output_dir: str  # absolute
    command: list[str]
    pid: int | None = None
    pid_started: str | None = None  # /proc/PID/stat start time: tells the process from a later one with its pid
    started_at: float = 0.0
    stop_requested: bool = False
    returncode: int | None = None
    attempts: int = 0  # 1 + resumes
    history: list[dict] = field(default_factory=list)  # earlier attempts: {pid, started_at, returncode, stopped}

    @property
    def output(self) -> Path:
        return Path(self.output_dir)


def _process_start(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]  # fields after "(comm)" start at field 3


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False


class RunRegistry:
    """The runs under HOME/runs/, started with `python -m tunesmith train` in `workdir`."""

    def __init__(self, home: Path, workdir: Path, python: str = sys.executable):
        self.home, self.workdir, self.python = Path(home), Path(workdir), python
        self.folder = self.home / "runs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen] = {}  # the processes this server started (reaped here)

    # --- the registry on disk ------------------------------------------------------------------------

    def runs(self) -> list[Run]:
        """Every run, newest first."""
        found = []
        for path in self.folder.glob(f"*/{RUN_FILE}"):
            try:
                found.append(self.get(path.parent.name))
            except ConfigError:
                continue  # a folder being written, or damaged: not listed
        return sorted(found, key=lambda r: r.started_at, reverse=True)

    def get(self, run_id: str) -> Run:
        path = self.folder / Path(run_id).name / RUN_FILE
        try:
            return Run(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"run `{run_id}`: no readable {path} ({exc})") from None

    def _save(self, run: Run) -> None:
        scratch = self.folder / run.id / (RUN_FILE + ".tmp")
        scratch.write_text(json.dumps(asdict(run), indent=1))
        os.replace(scratch, self.folder / run.id / RUN_FILE)

    def config_path(self, run: Run) -> Path:
        return self.folder / run.id / CONFIG_FILE

    def log_path(self, run: Run) -> Path:
        return self.folder / run.id / LOG_FILE

    # --- start, stop, resume ----------------------------------------------------------------------------

    def start(self, yaml_text: str, name: str | None = None) -> Run:
        """Write the config and start `tunesmith train` on it. The config is checked by the process
        itself (its errors land in the log); here only what the registry needs is read."""
        try:
            raw = yaml.safe_load(yaml_text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"the config is not valid YAML: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("output_dir"), str) or not raw["output_dir"].strip():
            raise ConfigError("the config needs `output_dir` (where the run writes its model)")
        output = (self.workdir / raw["output_dir"]).resolve()
        busy = [r for r in self.runs() if r.output == output and self.alive(r)]
        if busy:
            raise ConfigError(
                f"output_dir {output} is being written by run `{busy[0].id}`; stop it or choose another output_dir"
            )
        run_id = (
            time.strftime("%Y%m%d-%H%M%S")
            + "-"
            + "".join(c if c.isalnum() or c in "-_" else "-" for c in (name or output.name))[:40]
        )
        while (self.folder / run_id).exists():
            run_id += "x"
        (self.folder / run_id).mkdir(parents=True)
        (self.folder / run_id / CONFIG_FILE).write_text(yaml_text, encoding="utf-8")
        config = str(self.folder / run_id / CONFIG_FILE)
        run = Run(id=run_id, output_dir=str(output), command=[self.python, "-m", "tunesmith", "train", config])
        return self._launch(run, [])

    def resume(self, run_id: str) -> Run:
        """Run the same config again; `training.resume=auto` continues from the newest valid checkpoint."""
        run = self.get(run_id)
        if self.alive(run):
            raise ConfigError(f"run `{run_id}` is still running; stop it first")
        if self.status(run) == "finished":
            raise ConfigError(
                f"run `{run_id}` finished; its model is in {run.output_dir} (start a new run to train again)"
            )
        run.history.append(
            {"pid": run.pid, "started_at": run.started_at, "returncode": run.returncode, "stopped": run.stop_requested}
        )
        run.stop_requested, run.returncode = False, None
        return self._launch(run, ["training.resume=auto"])

    def _launch(self, run: Run, overrides: list[str]) -> Run:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        with self.log_path(run).open("a", encoding="utf-8") as log:
            log.write(
                f"\n[tunesmith ui] {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                f"{' '.join(run.command[1:] + overrides)}\n"
            )
            log.flush()
            child = subprocess.Popen(
                run.command + overrides,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self._children[run.id] = child
        run.pid, run.pid_started, run.started_at = child.pid, _process_start(child.pid), time.time()
        run.attempts += 1
        self._save(run)
        return run

    def stop(self, run_id: str) -> Run:
        """SIGTERM to the run's process group: the trainer saves a checkpoint at the end of the
        current step and the run ends as interrupted (runtime.checkpoints.StopOnSignal)."""
        run = self.get(run_id)
        if not self.alive(run):
            raise ConfigError(f"run `{run_id}` is not running")
        run.stop_requested = True
        self._save(run)
        try:
            os.killpg(run.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            os.kill(run.pid, signal.SIGTERM)
        return run

    # --- what a run is doing ----------------------------------------------------------------------------

    def alive(self, run: Run) -> bool:
        if run.pid is None:
            return False
        child = self._children.get(run.id)
        if child is not None and child.pid == run.pid:
            code = child.poll()  # also reaps it
            if code is None:
                return True
            if run.returncode is None:
                run.returncode = code
                self._save(run)
            return False
        started = _process_start(run.pid)
        if started is not None:
            return started == run.pid_started and not _zombie(run.pid)
        if run.pid_started is not None:
            return False  # /proc works and the process is gone
        try:
            os.kill(run.pid, 0)
        except OSError:
            return False
        return True

    def status(self, run: Run) -> str:
        if self.alive(run):
            return "stopping" if run.stop_requested else "running"
        if (run.output / RUN_MANIFEST).is_file() and run.returncode in (0, None):
            return "finished"
        if run.stop_requested:
            return "stopped"
        return "failed"

    def resumable(self, run: Run) -> bool:
        """Not running, not finished, and a committed checkpoint waits in OUTPUT.partial/."""
        if self.status(run) not in ("stopped", "failed"):
            return False
        return any(
            (p / CHECKPOINT_MANIFEST).is_file() for p in partial_folder(run.output).glob(CHECKPOINT_PREFIX + "*")
        )

    def run_folder(self, run: Run) -> Path:
        """Where the run writes now: OUTPUT.partial/ while it trains (or was cut short), OUTPUT/ when done."""
        partial = partial_folder(run.output)
        return partial if partial.is_dir() or not run.output.is_dir() else run.output

    def metrics(self, run: Run) -> list[dict]:
        path = self.run_folder(run) / "metrics.jsonl"
        records = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # the line being written
        return records

    def progress(self, run: Run) -> dict:
        """step, total steps (when max_steps is set) or epochs, the fraction done and the last loss."""
        records = self.metrics(run)
        try:
            training = (yaml.safe_load(self.config_path(run).read_text()) or {}).get("training") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            training = {}
        step = max((r.get("step", 0) for r in records), default=0)
        epoch = max((r.get("epoch", 0.0) for r in records), default=0.0)
        max_steps, epochs = training.get("max_steps", -1), training.get("epochs", 3.0)
        if isinstance(max_steps, int) and max_steps > 0:
            fraction = step / max_steps
        else:
            fraction = epoch / epochs if isinstance(epochs, (int, float)) and epochs > 0 else 0.0
        if self.status(run) == "finished":
            fraction = 1.0
        losses = [r["loss"] for r in records if isinstance(r.get("loss"), (int, float))]
        return {
            "step": step,
            "epoch": epoch,
            "max_steps": max_steps if isinstance(max_steps, int) else -1,
            "fraction": min(max(fraction, 0.0), 1.0),
            "loss": losses[-1] if losses else None,
        }

    def loss_points(self, run: Run) -> list[dict]:
        """Rows {step, loss, series} for a plot: the training loss and the validation loss."""
        points = []
        for r in self.metrics(run):
            for key, series in (("loss", "train"), ("eval_loss", "validation")):
                if isinstance(r.get(key), (int, float)):
                    points.append({"step": r.get("step", 0), "loss": float(r[key]), "series": series})
        return points

    def log_tail(self, run: Run, lines: int = 40) -> str:
        try:
            text = self.log_path(run).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm redraws its bar with carriage returns: keep what the last redraw shows
        shown = [line.rpartition("\r")[2] for line in text.splitlines()]
        return "\n".join(shown[-lines:])
