"""Load a YAML config, apply `key=value` overrides, validate, and describe the keys.

    cfg = load_config("examples/sft_lora.yaml", ["training.epochs=1", "output_dir=out/x"])

Errors name the file, line and dotted key, e.g.
`examples/sft_lora.yaml:14: training.lr: unknown key (did you mean training.learning_rate?)`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config.schema import TunesmithConfig
from tunesmith.errors import ConfigError

# --- reading YAML with line numbers -----------------------------------------------------------


def _line_map(text: str) -> dict[str, int]:
    """Map dotted keys to the 1-based line where they appear in the YAML text."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}{key_node.value}"
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key + ".")

    try:
        root = yaml.compose(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        return lines
    if root is not None:
        walk(root, "")
    return lines


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not part of the first key
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the config as UTF-8"
        ) from None
    deep = _too_deep(text)
    if deep:
        raise ConfigError(f"{path}:{deep}: invalid YAML: nested more than {MAX_FLOW_DEPTH} levels deep")
    expanded = _expanded_size(text)
    if expanded > MAX_EXPANDED_NODES:
        raise ConfigError(
            f"{path}: invalid YAML: its aliases (*name) expand to {expanded:,} values, more than "
            f"{MAX_EXPANDED_NODES:,}; a config never needs that many (write the values out)"
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # a value YAML parses but Python cannot hold, e.g. an integer of 5000 digits
        raise ConfigError(f"{path}: invalid YAML value: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw, _line_map(text)


MAX_FLOW_DEPTH = 100  # far beyond any config; PyYAML takes seconds (and more) on deeper [[[...]]]


MAX_EXPANDED_NODES = 1_000_000  # an alias "bomb" (anchors of anchors) expands to billions from a few lines


def _expanded_size(text: str) -> int:
    """How many values the YAML holds once every alias is expanded (counted on the node graph, where
    an alias is a shared node, so counting is cheap); 0 when it does not compose (safe_load then
    reports the error with its line)."""
    try:
        root = yaml.compose(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        return 0
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 0  # a recursive alias (a node inside itself) counts once
            children = (
                [n for pair in node.value for n in pair]
                if isinstance(node, yaml.MappingNode)
                else (node.value if isinstance(node, yaml.SequenceNode) else [])
            )
            sizes[key] = 1 + sum(size(child) for child in children)
        return sizes[key]

    try:
        return size(root) if root is not None else 0
    except RecursionError:
        return 0


def _too_deep(text: str) -> int | None:
    """The line where `[`/`{` nesting first passes MAX_FLOW_DEPTH (quotes not parsed: a cheap guard
    against inputs that make the YAML parser crawl), or None."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                return text.count("\n", 0, i) + 1
        elif ch in "]}" and depth:
            depth -= 1
    return None


OVERRIDE_LINE = -1  # marks keys that came from the command line in the line map

# --- overrides ----------------------------------------------------------------------------------


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars/lists (`3`, `true`, `[a, b]`)."""
    raw = copy.deepcopy(raw)  # YAML may hold dates or sets too; the schema refuses them with their key
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override `{item}`: expected KEY=VALUE, e.g. training.epochs=2")
        key, _, text = item.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"override `{item}`: empty key")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override `{item}`: `{part}` is not a section")
            node = child
        node[parts[-1]] = value
    return raw


# --- validation -----------------------------------------------------------------------------------


def all_keys(model: type[BaseModel] = TunesmithConfig, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = _section_type(field.annotation)
        keys.append(prefix + name)
        if sub is not None:
            keys.extend(all_keys(sub, prefix + name + "."))
    return keys


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


# Names that users of transformers / LLaMA-Factory type out of habit.
_SYNONYMS = {
    "lr": "learning_rate",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation",
    "warmup_ratio": "warmup",
    "warmup_steps": "warmup",
    "lr_scheduler_type": "scheduler",
    "cutoff_len": "max_length",
    "lora_rank": "r",
    "rank": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "lora_target": "target_modules",
    "model_name_or_path": "name_or_path",
    "dataset": "train",
}


def _suggest(key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in all_keys() if k.rpartition(".")[0] == parent]
    if _SYNONYMS.get(leaf) in siblings:
        return f" (did you mean {parent + '.' if parent else ''}{_SYNONYMS[leaf]}?)"
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {parent + '.' if parent else ''}{close[0]}?)"
    anywhere = [k for k in all_keys() if k.rpartition(".")[2] in (leaf, _SYNONYMS.get(leaf))]
    if anywhere:
        return f" (did you mean {anywhere[0]}?)"
    return f" (valid keys{' of `' + parent + '`' if parent else ''}: {', '.join(siblings)})"


def _format_error(err: dict[str, Any], lines: dict[str, int], source: str) -> str:
    key = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "config"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key{_suggest(key)}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
        msg = f"{msg} (got {err['input']!r})"
    msg = msg.removeprefix("Value error, ")
    named = re.match(r"([\w.]+): ", msg)  # a whole-config check that names its key first
    if key == "config" and named and named.group(1) in lines:
        key, msg = named.group(1), msg[named.end() :]
    line = lines.get(key)
    if line == OVERRIDE_LINE:
        where = "command-line override"
    else:
        where = f"{source}:{line}" if line else source
    return f"{where}: {key}: {msg}"


def validate_config(
    raw: dict[str, Any], lines: dict[str, int] | None = None, source: str = "config"
) -> TunesmithConfig:
    try:
        return TunesmithConfig.model_validate(raw)
    except ValidationError as exc:
        messages = [_format_error(e, lines or {}, source) for e in exc.errors()]
        raise ConfigError("invalid config:\n  " + "\n  ".join(messages)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> TunesmithConfig:
    raw, lines = read_yaml(path)
    raw = apply_overrides(raw, overrides or [])
    for item in overrides or []:
        lines[item.partition("=")[0].strip()] = OVERRIDE_LINE
    cfg = validate_config(raw, lines, str(path))
    cfg._source = str(path)
    # Relative data paths in a config file are relative to the working directory (as in the
    # examples, which are run from the repository root), like every other CLI path.
    return cfg


def config_hash(cfg: TunesmithConfig) -> str:
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dump_config(cfg: TunesmithConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))


# --- help text generated from the schema ------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None)) + " (optional)"
    if origin is list:
        (inner,) = typing.get_args(annotation) or (Any,)
        return f"list[{_type_name(inner)}]"
    return getattr(annotation, "__name__", str(annotation))


def describe_keys(model: type[BaseModel] = TunesmithConfig, prefix: str = "") -> str:
    """One line per config key: name, type, default and description (used by --help)."""
    out = []
    for name, field in model.model_fields.items():
        sub = _section_type(field.annotation)
        if sub is not None:
            out.append(f"\n  {prefix}{name}:  {field.description or ''}")
            out.append(describe_keys(sub, prefix + name + "."))
            continue
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = f"default {field.default_factory()!r}"
        else:
            default = f"default {field.default!r}"
        out.append(f"  {prefix}{name} ({_type_name(field.annotation)}; {default})\n      {field.description or ''}")
    return "\n".join(out)
