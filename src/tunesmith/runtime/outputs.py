"""Output folders that are either finished or clearly not, and that only ever replace our own.

A run writes into `OUTPUT_DIR.partial/`; when everything is saved, the run manifest
(`tunesmith.json`) is written last and the folder is renamed to `OUTPUT_DIR`. A folder without a
manifest is never loaded as a result (see `layout.read_manifest`).

Deleting is limited to what tunesmith wrote (docs/runtime.md, "What a run may delete"):
- `overwrite_output` / `--overwrite` replaces `OUTPUT_DIR` only when it is a tunesmith output
  (its `tunesmith.json` manifest says so) or empty; any other folder is refused, untouched.
- A new run clears `OUTPUT_DIR.partial` only when it is a run folder (the `.tunesmith-run` marker
  a run writes first, or nothing but checkpoints and logs) and holds no checkpoint to continue
  from (`runtime.checkpoints.choose_resume` decides that before the folder is opened).
- Places that hold more than a run (`/`, the home folder, the working directory and its
  ancestors) and folders holding the run's own config or data are never output folders
  (`config.paths`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from tunesmith.config.paths import holds, unsafe_output_dir
from tunesmith.errors import OutputError
from tunesmith.layout import RUN_MANIFEST

log = logging.getLogger(__name__)
MARKER = ".tunesmith-run"  # written into OUTPUT.partial when a run opens it
# what older runs left in OUTPUT.partial before the marker existed
_RUN_FILES = re.compile(r"checkpoint-\d+|metrics\.jsonl|loss\.png|\.loss\.png\.tmp.*|rejects\.jsonl|runs")


def is_output(folder: Path) -> bool:
    """True if `folder` is a finished tunesmith output (or export): its manifest says so."""
    try:
        manifest = json.loads((Path(folder) / RUN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "finished_at" in manifest


def is_run_folder(folder: Path) -> bool:
    """True if `folder` (an OUTPUT.partial) holds only what a tunesmith run wrote."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    return all(_RUN_FILES.fullmatch(entry.name) for entry in folder.iterdir())


class OutputFolder:
    def __init__(self, output_dir: str | Path, overwrite: bool = False, protect: list[str] = ()):
        """`protect`: paths the run reads (its config, data); an output folder holding one is refused."""
        why = unsafe_output_dir(output_dir)
        if why:
            raise OutputError(f"output folder: {why}")
        self.final = Path(output_dir)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.overwrite = overwrite
        for path in protect:
            if path and holds(self.final, path):
                raise OutputError(
                    f"{self.final}: the output folder holds `{path}`, which this run reads; a finished "
                    f"run replaces the folder. Move the file out or choose another output_dir"
                )
        self._check_final()

    def _check_final(self) -> None:
        """Refuse an existing OUTPUT_DIR unless it is empty, or a tunesmith output and overwrite is on."""
        final = self.final
        if final.is_symlink():
            raise OutputError(
                f"{final}: is a symbolic link; a run replaces its output folder, so give the real "
                f"folder's path (or another output_dir)"
            )
        if not final.exists():
            return
        if not final.is_dir():
            raise OutputError(f"{final}: exists and is not a folder; choose another output_dir (nothing was changed)")
        if not any(final.iterdir()):
            return
        if not self.overwrite:
            raise OutputError(f"{final}: output folder exists; choose another output_dir or set overwrite_output=true")
        if not is_output(final):
            raise OutputError(
                f"{final}: exists and is not a tunesmith output (no {RUN_MANIFEST} manifest of a finished run), so "
                f"overwrite will not delete it; nothing was changed. Move its files away or choose another output_dir"
            )

    def open(self, resume: bool = False, discard: bool = False) -> Path:
        """The work folder. Leftovers of an earlier run are cleared unless resuming from them; a
        folder holding a whole checkpoint is cleared only with `discard` (training.resume=restart),
        and a folder that holds anything but a run's files never (refused)."""
        partial = self.partial
        if (partial.exists() or partial.is_symlink()) and not resume:
            if partial.is_symlink() or not partial.is_dir():
                raise OutputError(
                    f"{partial}: exists and is not a run folder (a file or a link); move it away, nothing was changed"
                )
            if not is_run_folder(partial):
                raise OutputError(
                    f"{partial}: holds files a tunesmith run did not write, so it is not cleared; move "
                    f"them away or choose another output_dir (nothing was changed)"
                )
            from tunesmith.runtime.checkpoints import newest_valid

            found = newest_valid(partial)
            if found is not None and not discard:
                raise OutputError(
                    f"{partial}: holds the checkpoint {found[0].name} of an earlier run; continue it "
                    f"with training.resume=auto or discard it with training.resume=restart"
                )
            what = f"its checkpoint {found[0].name} (training.resume=restart)" if found else "no complete checkpoint"
            log.warning("removing %s left by an earlier run: %s", partial, what)
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        (partial / MARKER).write_text(
            json.dumps({"opened_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()})
        )
        return partial

    def commit(self, manifest: dict) -> Path:
        from tunesmith.runtime.checkpoints import checkpoints

        self._check_final()  # again: the folder may have changed while the run trained
        for _, path in checkpoints(self.partial):  # the final weights are saved; resume points are not kept
            shutil.rmtree(path)
        (self.partial / MARKER).unlink(missing_ok=True)
        manifest = {**manifest, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = self.partial / (RUN_MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        os.replace(tmp, self.partial / RUN_MANIFEST)
        if self.final.exists():
            # a name no one else uses, so only the replaced output is ever deleted
            old = self.final.with_name(f".{self.final.name}.replaced-{os.getpid()}-{time.time_ns()}")
            self.final.rename(old)
            self.partial.rename(self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.partial.rename(self.final)
        return self.final
