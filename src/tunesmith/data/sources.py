"""Named datasets and mixing: `data.train: [support_faq, general_chat]` with `data.weights`.

A registry is a YAML file of named datasets, or LLaMA-Factory's `dataset_info.json` (any `.json`
file: see `llamafactory.py`):

    support_faq:
      path: data/faq.jsonl          # a file, a folder, or a list of them (relative to this file)
      format: alpaca                # optional, as data.format
      columns: {instruction: q, output: a}   # optional, as data.columns
    general_chat:
      path: data/chat/

Each entry of `data.train` / `data.validation` is a path or a registry name. Every source is read
with its own format and column mapping, then the sources are mixed: with `data.weights`, source i
contributes weight_i / sum(weights) of the mixed set (sampled without replacement while it has
rows, repeated when a small source must be up-sampled), seeded by `training.seed`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import ConfigError

ENTRY_KEYS = {"path", "format", "columns", "system"}
FORMATS = ("auto", "alpaca", "messages", "sharegpt", "multitask", "prompt_completion")


@dataclass
class Source:
    name: str
    paths: list[str]
    format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    system: str | None = None
    text_columns: dict[str, str] | None = None  # columns for `stage: pt` where they differ (dataset_info.json)
    ranking: bool = False  # a LLaMA-Factory ranking dataset: preference pairs only
    hub: dict | None = None  # a dataset_info.json entry on the Hub: fetched when used
    refused: str | None = None  # why a dataset_info.json entry cannot be read (raised when it is used)


def load_registry(path: str | Path) -> dict[str, Source]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.registry: {path}: registry file not found")
    if path.suffix == ".json":
        from tunesmith.data.llamafactory import load_dataset_info

        return {name: Source(name, **fields) for name, fields in load_dataset_info(path).items()}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a registry is a mapping of dataset names to {{path, format, columns}}")
    registry = {}
    for name, entry in raw.items():
        where = f"{path}: dataset `{name}`"
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a path or a mapping with `path`")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(ENTRY_KEYS))})"
            )
        paths = entry.get("path")
        paths = [paths] if isinstance(paths, str) else paths
        if not (isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths)):
            raise ConfigError(f"{where}: `path` must be a path or a list of paths")
        if entry.get("format", "auto") not in FORMATS:
            raise ConfigError(f"{where}: format `{entry['format']}` is not one of {', '.join(FORMATS)}")
        columns = entry.get("columns") or {}
        if not (
            isinstance(columns, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())
        ):
            raise ConfigError(f"{where}: `columns` must map canonical names to names in the file")
        resolved = [str(p if Path(p).is_absolute() else path.parent / p) for p in paths]
        registry[str(name)] = Source(str(name), resolved, entry.get("format"), columns, entry.get("system"))
    return registry


def resolve_sources(entries: list[str], registry_path: str | None, key: str) -> list[Source]:
    """Each entry of `data.train`/`data.validation` as a Source: a registry name or a path."""
    registry = load_registry(registry_path) if registry_path else {}
    sources = []
    for i, entry in enumerate(entries):
        if entry in registry and registry[entry].refused:
            raise ConfigError(registry[entry].refused)
        if entry in registry and registry[entry].hub:
            from tunesmith.data.llamafactory import fetch_hub_dataset

            hub = registry[entry].hub
            sources.append(replace(registry[entry], paths=[str(fetch_hub_dataset(entry, hub["entry"], hub["info"]))]))
        elif entry in registry:
            sources.append(registry[entry])
        elif Path(entry).exists() or not registry:
            sources.append(Source(entry, [entry]))
        else:
            label = key if "." in key else f"data.{key}"
            names = sorted(registry)
            shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
            raise ConfigError(
                f"{label}[{i}]: `{entry}` is neither a file nor a dataset of {registry_path} (its datasets: {shown})"
            )
    return sources


def mix(parts: list[list[Any]], weights: list[float] | None, seed: int, total: int | None = None) -> list[Any]:
    """Concatenate the parts, or, with weights, draw weight_i/sum of `total` items from part i."""
    if not weights:
        return [item for part in parts for item in part]
    rng = random.Random(seed)
    total = total or sum(len(p) for p in parts)
    norm = sum(weights)
    mixed = []
    for part, weight in zip(parts, weights):
        want = round(total * weight / norm)
        order = list(range(len(part)))
        picked = []
        while len(picked) < want and part:
            rng.shuffle(order)
            picked += order[: want - len(picked)]
        mixed += [part[i] for i in picked]
    rng.shuffle(mixed)
    return mixed
