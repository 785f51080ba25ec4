"""Output folders that are either finished or clearly not.

A run writes into `OUTPUT_DIR.partial/`; when everything is saved, the run manifest
(`tunesmith.json`) is written last and the folder is renamed to `OUTPUT_DIR`. A folder without a
manifest is never loaded as a result (see `layout.read_manifest`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tunesmith.errors import OutputError
from tunesmith.layout import RUN_MANIFEST


class OutputFolder:
    def __init__(self, output_dir: str | Path, overwrite: bool = False):
        self.final = Path(output_dir)
        self.partial = self.final.with_name(self.final.name + ".partial")
        if self.final.exists() and any(self.final.iterdir()) and not overwrite:
            raise OutputError(
                f"{self.final}: output folder exists; choose another output_dir or set overwrite_output=true"
            )

    def open(self, resume: bool = False) -> Path:
        """The work folder. Leftovers of a crashed run are removed, unless resuming from them
        (they are still never taken for a result: only `commit` makes a result)."""
        if self.partial.exists() and not resume:
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial

    def commit(self, manifest: dict) -> Path:
        from tunesmith.runtime.checkpoints import checkpoints

        for _, path in checkpoints(self.partial):  # the final weights are saved; resume points are not kept
            shutil.rmtree(path)
        manifest = {**manifest, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = self.partial / (RUN_MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        os.replace(tmp, self.partial / RUN_MANIFEST)
        if self.final.exists():
            old = self.final.with_name(self.final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            self.final.rename(old)
            self.partial.rename(self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.partial.rename(self.final)
        return self.final
