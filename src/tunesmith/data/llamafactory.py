"""LLaMA-Factory's `dataset_info.json` as a registry: `data.registry: path/to/dataset_info.json`.

Each entry becomes the fields of a `sources.Source`, read with the same meaning LLaMA-Factory gives it
(its `parser.DatasetAttr` and `converter.py`):

    file_name                 a file or folder beside dataset_info.json
    hf_hub_url (+ subset, split, folder)   a Hugging Face dataset, loaded through `datasets` and
                              kept as JSON lines under $TUNESMITH_CACHE/hub-datasets; without a
                              network this is a clear ConfigError
    formatting                alpaca (default), sharegpt or openai: rows are recognised by their
                              keys once `columns` and `tags` are applied, so it only chooses the
                              column names below
    ranking                   true: preference pairs, for dpo and rm only
    columns                   alpaca: prompt/query/response/history -> instruction/input/output/
                              history; sharegpt/openai: messages -> conversations/messages; all:
                              system, tools, chosen, rejected, kto_tag (-> label); images, videos
                              and audios are refused (tunesmith trains text models)
    tags                      role_tag, content_tag, user_tag, assistant_tag, observation_tag,
                              function_tag, system_tag: the names a sharegpt file uses for turn keys
                              and roles (passed on in `columns`, see `turns.rename_columns`)

A pre-training entry (LLaMA-Factory's `columns: {prompt: text}` on a .txt/.jsonl of documents)
reads that column as `text` for `stage: pt`. `ms_hub_url`/`om_hub_url` alone, `script_url`,
`cloud_file_name` and `num_samples` are refused with what to use instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError

KEYS = {
    "file_name",
    "hf_hub_url",
    "ms_hub_url",
    "om_hub_url",
    "script_url",
    "cloud_file_name",
    "formatting",
    "ranking",
    "subset",
    "split",
    "folder",
    "num_samples",
    "columns",
    "tags",
}
MEDIA = ("images", "videos", "audios")
ALPACA = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
COMMON = {"system": "system", "tools": "tools", "chosen": "chosen", "rejected": "rejected", "kto_tag": "label"}
TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")


def load_dataset_info(path: Path) -> dict[str, Any]:
    """{name: the `sources.Source` fields} for every entry of a LLaMA-Factory dataset_info.json (hub entries
    fetched when used); `sources.load_registry` makes the Source records (this module does not import it)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"data.registry: {path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise ConfigError(f"data.registry: {path}: a dataset_info.json is an object of dataset names to entries")
    registry = {}
    for name, entry in info.items():
        where = f"{path}: dataset `{name}`"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with file_name or hf_hub_url")
        try:
            translated = _translate(entry, where)
            hub = _hub(entry, where)
        except ConfigError as exc:  # refused when used: a registry may list datasets this run never reads
            registry[name] = {"paths": [], "refused": str(exc)}
            continue
        if hub:
            registry[name] = {"paths": [], "hub": {"entry": entry, "info": str(path)}, **translated}
        else:
            registry[name] = {"paths": [str(_local(path, entry, where))], **translated}
    return registry


def _translate(entry: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(entry) - KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (LLaMA-Factory keys: {', '.join(sorted(KEYS))})"
        )
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt", "openai"):
        raise ConfigError(f"{where}: formatting `{formatting}` is not alpaca, sharegpt or openai")
    if entry.get("num_samples") is not None:
        raise ConfigError(f"{where}: num_samples is not read; cap rows with data.max_samples instead")
    columns, tags = entry.get("columns") or {}, entry.get("tags") or {}
    for key, value in (("columns", columns), ("tags", tags)):
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise ConfigError(f"{where}: `{key}` must map names to strings")
    media = [c for c in MEDIA if c in columns]
    if media:
        raise ConfigError(
            f"{where}: columns {', '.join(media)}: tunesmith trains text models; images, videos and "
            "audio are not read (drop the entry or these columns)"
        )
    ours = (
        dict(ALPACA)
        if formatting == "alpaca"
        else {"messages": "conversations" if formatting == "sharegpt" else "messages"}
    )
    ours.update(COMMON)
    mapped, text_columns = {}, None
    for key, name in columns.items():
        if key not in ours:
            raise ConfigError(
                f"{where}: columns.{key} is not a LLaMA-Factory {formatting} column "
                f"(expected {', '.join(sorted(ours))})"
            )
        if ours[key] != name:
            mapped[ours[key]] = name
    if formatting == "alpaca" and set(columns) == {"prompt"}:  # a pre-training entry: that column is the document
        text_columns = {"text": columns["prompt"]} if columns["prompt"] != "text" else {}
    unknown_tags = set(tags) - set(TAGS)
    if unknown_tags:
        raise ConfigError(f"{where}: unknown tag(s) {', '.join(sorted(unknown_tags))} (expected {', '.join(TAGS)})")
    if tags and formatting == "alpaca":
        raise ConfigError(f"{where}: `tags` apply to sharegpt/openai entries; this one is alpaca")
    if formatting == "openai" and tags:
        raise ConfigError(
            f"{where}: `tags` of an openai entry are not read (its turns are {{role, content}} with "
            "OpenAI roles); use formatting: sharegpt with tags for other names"
        )
    mapped.update(tags)
    return {"columns": mapped, "text_columns": text_columns, "ranking": bool(entry.get("ranking", False))}


def _hub(entry: dict[str, Any], where: str) -> bool:
    if "hf_hub_url" in entry:
        return True
    for key, why in (
        ("ms_hub_url", "ModelScope"),
        ("om_hub_url", "Modelers"),
        ("script_url", "a loading script"),
        ("cloud_file_name", "cloud storage"),
    ):
        if key in entry and "file_name" not in entry:
            raise ConfigError(
                f"{where}: `{key}` loads from {why}, which tunesmith does not read; download the data "
                "and give its path as file_name (or an hf_hub_url)"
            )
    if "file_name" not in entry:
        raise ConfigError(f"{where}: needs file_name (a file or folder beside dataset_info.json) or hf_hub_url")
    return False


def _local(info_path: Path, entry: dict[str, Any], where: str) -> Path:
    file = entry["file_name"]
    if not isinstance(file, str) or not file:
        raise ConfigError(f"{where}: file_name must be a path")
    return Path(file) if Path(file).is_absolute() else info_path.parent / file


def fetch_hub_dataset(name: str, entry: dict[str, Any], info_path: str) -> Path:
    """The entry's rows as a JSON-lines file in the cache, downloaded through `datasets` the first time
    (called when the entry is used, so a registry listing hub datasets loads without a network)."""
    from tunesmith.models.default import cache_root

    url, subset, split, folder = (
        entry["hf_hub_url"],
        entry.get("subset"),
        entry.get("split", "train"),
        entry.get("folder"),
    )
    key = hashlib.sha256(json.dumps([url, subset, split, folder]).encode()).hexdigest()[:16]
    target = cache_root() / "hub-datasets" / f"{url.replace('/', '--')}-{key}.jsonl"
    if target.is_file():
        return target
    try:
        from datasets import load_dataset

        rows = load_dataset(url, name=subset, split=split, data_dir=folder)
    except Exception as exc:  # offline, unreachable, unknown repo: datasets raises many types
        raise ConfigError(
            f"data.registry: {info_path}: dataset `{name}` is on the Hugging Face Hub ({url}) and needs a network "
            f"to download it, which failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            f"Download it where there is a network (it is then cached), or save it as a file and give file_name"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    rows.to_json(str(partial), lines=True, force_ascii=False)
    partial.replace(target)
    return target
