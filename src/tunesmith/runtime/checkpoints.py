"""Checkpoints a resumed run can trust, and a clean stop on SIGTERM/SIGUSR1.

The transformers Trainer writes `checkpoint-STEP/` (weights in safetensors, optimiser, scheduler,
RNG states of every process, trainer state with the step and data position). `CheckpointGuard`
then writes `checkpoint.json` *last*, via a temp file and a rename: the size and sha256 of every
file, the config hash, the data fingerprint and the library versions. A checkpoint without a
manifest that verifies does not exist for resume, so one cut short by a crash is skipped.
Rotation (keep the newest `save_total_limit`) runs only after the new manifest is committed and
only inside this run's folder.

`StopOnSignal` turns SIGTERM or SIGUSR1 into "save a checkpoint at this step and stop"; the run
then ends as interrupted (its folder stays `OUTPUT.partial`) and `training.resume=auto` goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
from pathlib import Path

from transformers import TrainerCallback

from tunesmith.errors import ConfigError

log = logging.getLogger(__name__)
MANIFEST = "checkpoint.json"
PREFIX = "checkpoint-"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, step: int, identity: dict) -> None:
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"step": step, **identity, "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    with tmp.open("w") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MANIFEST)


def verify(folder: Path) -> dict | None:
    """The manifest of a checkpoint whose every file has the recorded size and hash, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        for name, meta in manifest["files"].items():
            path = folder / name
            if path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
                return None
        return manifest
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in Path(run_dir).glob(PREFIX + "*"):
        suffix = path.name[len(PREFIX) :]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def newest_valid(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that verifies; broken or partial ones are skipped with a warning."""
    for _, path in reversed(checkpoints(run_dir)):
        manifest = verify(path)
        if manifest is not None:
            return path, manifest
        log.warning("skipping %s: no manifest, or its files do not match it (an interrupted save?)", path)
    return None


def choose_resume(resume: str | None, run_dir: Path, identity: dict, force: bool) -> Path | None:
    """The checkpoint this run continues from, checked against it; None to start from step 0.

    `training.resume`: unset or 'auto' = the newest checkpoint that verifies in `run_dir`
    (OUTPUT.partial) if there is one; 'restart' = none (the caller discards the folder); else a
    checkpoint folder. A checkpoint of a different config or training data is refused, naming the
    two ways on: `training.resume_changed=true` continues it, `training.resume=restart` discards it."""
    if resume == "restart":
        return None
    if resume is None or resume == "auto":
        found = newest_valid(run_dir) if Path(run_dir).is_dir() else None
        if found is None:
            if resume == "auto":
                log.warning("training.resume=auto: no valid checkpoint in %s; starting from the beginning", run_dir)
            return None
        path, manifest = found
    else:
        path = Path(resume)
        manifest = verify(path)
        if manifest is None:
            raise ConfigError(f"training.resume: {path} is not a complete checkpoint (missing or failing {MANIFEST})")
    for key in ("config_hash", "data_fingerprint"):
        if manifest.get(key) != identity.get(key) and not force:
            what = "config" if key == "config_hash" else "training data"
            raise ConfigError(
                f"training.resume: the {what} changed since {path} was saved; resuming would not be "
                f"the same run. To continue it anyway, run the same command with "
                f"training.resume_changed=true; to discard it and start over, with "
                f"training.resume=restart"
            )
    return path


class CheckpointGuard(TrainerCallback):
    """After each Trainer save: write the manifest last, then rotate to the newest `keep`."""

    def __init__(self, run_dir: Path, identity: dict, keep: int | None):
        self.run_dir, self.identity, self.keep = Path(run_dir), identity, keep

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = self.run_dir / f"{PREFIX}{state.global_step}"
        if not folder.is_dir():
            return
        write_manifest(folder, state.global_step, self.identity)
        log.info("checkpoint %s committed", folder)
        if self.keep:
            valid = [(s, p) for s, p in checkpoints(self.run_dir) if (p / MANIFEST).is_file()]
            for _, path in valid[: -self.keep]:
                shutil.rmtree(path, ignore_errors=True)
            newest = valid[-1][0] if valid else -1
            for step, path in checkpoints(self.run_dir):  # leftovers of interrupted saves
                if step < newest and not (path / MANIFEST).is_file():
                    shutil.rmtree(path, ignore_errors=True)


class StopOnSignal(TrainerCallback):
    """SIGTERM/SIGUSR1 during training: save a checkpoint after the current step, then stop."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: str | None = None
        self.stopped_at: int | None = None
        self._previous = {}

    def _handler(self, signum, frame):
        self.received = signal.Signals(signum).name

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
