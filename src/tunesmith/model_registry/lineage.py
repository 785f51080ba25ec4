"""What a registered version records about its folder, and the sha256 list that makes it immutable.

The lineage of a finished output or export: base model, stage and method, data fingerprints,
config hash, metrics of eval_results.json and of the export's check, and the files behind them
(the trained run's eval_results.json and config.yaml). Every file is hashed; the list's own
sha256 is kept in the registry database, and `check_copy` compares a stored copy with both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunesmith.errors import ModelError
from tunesmith.layout import read_manifest, trained_part


def file_hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        hashes[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return hashes


def list_digest(hashes: dict[str, str]) -> str:
    """The sha256 of a file list (what the registry database keeps for a version)."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def check_copy(local: Path, registered_digest: str | None, what: str) -> Path:
    """`local` holds `files.json` and `model/`; refuse unless both match what was registered. Returns `local/model`."""
    expected = json.loads((local / "files.json").read_text())
    if list_digest(expected) != registered_digest:
        raise ModelError(
            f"registry: {what}: its file list {local / 'files.json'} does not "
            "match the sha256 recorded at registration; the stored copy was changed"
        )
    found = file_hashes(local / "model")
    changed = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if changed:
        raise ModelError(
            f"registry: {what} in {local / 'model'} differs from what was "
            f"registered (changed, missing or added: {', '.join(changed[:5])}); registered versions are "
            "immutable, so register the new files as a new version"
        )
    return local / "model"


def lineage(folder: Path) -> tuple[dict[str, str], dict[str, float], list[Path]]:
    """(tags, metrics, lineage files) of a finished output or export: where it came from and how it scored."""
    manifest = read_manifest(folder)  # refuses an unfinished folder
    origin = Path(manifest["exported_from"]) if manifest.get("exported_from") else folder
    data = manifest.get("data") or {}
    tags = {
        "format": manifest.get("format") or f"tunesmith output ({trained_part(folder) or 'whole model'})",
        "base_model": manifest.get("base_model_ref") or manifest.get("base_model") or str(origin),
        "stage": manifest.get("stage"),
        "method": manifest.get("method"),
        "config_hash": manifest.get("config_hash"),
        "train_fingerprint": data.get("train_fingerprint"),
        "validation_fingerprint": data.get("validation_fingerprint"),
        "source_path": str(folder.resolve()),
        "exported_from": manifest.get("exported_from"),
    }
    metrics = {k: float(v) for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, (int, float))}
    files = []
    for place in dict.fromkeys([folder, origin]):
        results = place / "eval_results.json"
        if results.is_file() and results not in files:
            files.append(results)
            tuned = json.loads(results.read_text(encoding="utf-8")).get("fine_tuned") or {}
            metrics.update(
                {k: float(v) for k, v in tuned.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            )
        if (place / "config.yaml").is_file() and place != folder:
            files.append(place / "config.yaml")
    check = manifest.get("check") or {}
    metrics.update({f"check.{k}": float(v) for k, v in check.items() if isinstance(v, (int, float))})
    return {k: str(v) for k, v in tags.items() if v is not None}, metrics, files
