"""The Train form, generated from the config schema: a new config key appears in the page with no UI code.

    specs = field_specs()                           # one FieldSpec per config key, in schema order
    raw = form_to_config(specs, values)             # the form's values -> the config dict (non-defaults only)
    text = config_yaml(raw)                          # the YAML the run will use

Each pydantic field of `TunesmithConfig` becomes a spec: a checkbox (bool), a choice (Literal), or
a text box whose text is parsed back by the field's type (numbers, comma-separated lists); fields
of any other shape (dicts, lists of sections, optional sections) are typed as YAML. The config
written holds only what differs from the defaults (plus stage, method and output_dir), so it reads
like a hand-written one, and a method's or stage's section is written only when that method or
stage is chosen (elsewhere the config would refuse it). Validation is the config loader's own.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from tunesmith.config.loader import validate_config
from tunesmith.config.schema import METHOD_SECTIONS, STAGE_NAMES, TunesmithConfig
from tunesmith.errors import ConfigError

ALWAYS = ("stage", "method", "output_dir")  # written even when equal to the default
NONE_CHOICE = "(none)"


@dataclass(frozen=True)
class FieldSpec:
    key: str  # dotted config key, e.g. training.learning_rate
    section: str  # top-level section ('' for top-level keys)
    widget: str  # checkbox | choice | text | yaml
    parse: str  # bool | int | float | str | choice | list | yaml
    default: Any
    description: str
    choices: tuple = ()
    optional: bool = False

    def shown(self, value: Any) -> Any:
        """The default (or a value) as the widget shows it."""
        if self.widget == "checkbox":
            return bool(value)
        if self.widget == "choice":
            return NONE_CHOICE if value is None else str(value)
        if value is None:
            return ""
        if self.parse == "list" and isinstance(value, list):
            return ", ".join(str(v) for v in value)
        if self.widget == "yaml":
            return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).strip() if value not in ({}, []) else ""
        return str(value)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True  # noqa: UP007 (built from a tuple)
    return annotation, False


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _scalar_list(annotation: Any) -> bool:
    """list[str|int|float], or such a list or a Literal (lora.target_modules)."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (inner,) = typing.get_args(annotation) or (Any,)
        return inner in (str, int, float) or typing.get_origin(inner) is typing.Literal
    if origin in (typing.Union, types.UnionType):
        return all(_scalar_list(a) or typing.get_origin(a) is typing.Literal for a in typing.get_args(annotation))
    return False


def _spec(key: str, section: str, field) -> FieldSpec:
    annotation, optional = _strip_optional(field.annotation)
    default = field.default_factory() if field.default_factory is not None else field.default
    if field.is_required():
        default = None
    common = {
        "key": key,
        "section": section,
        "default": default,
        "description": field.description or "",
        "optional": optional,
    }
    if annotation is bool:
        return FieldSpec(widget="checkbox", parse="bool", **common)
    if typing.get_origin(annotation) is typing.Literal:
        choices = tuple(typing.get_args(annotation)) + ((None,) if optional else ())
        return FieldSpec(widget="choice", parse="choice", choices=choices, **common)
    if annotation in (int, float, str):
        return FieldSpec(widget="text", parse=annotation.__name__, **common)
    if _scalar_list(annotation):
        # a bare word the key also takes in place of a list (lora.target_modules: all-linear)
        bare = typing.get_args(annotation) if typing.get_origin(annotation) is not list else ()
        choices = tuple(v for a in bare if typing.get_origin(a) is typing.Literal for v in typing.get_args(a))
        return FieldSpec(widget="text", parse="list", choices=choices, **common)
    return FieldSpec(widget="yaml", parse="yaml", **common)


def field_specs(model: type[BaseModel] = TunesmithConfig, prefix: str = "", section: str = "") -> list[FieldSpec]:
    """One spec per config key, nested sections flattened to dotted keys (optional sections and
    lists of sections stay one YAML field)."""
    specs = []
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            specs.extend(field_specs(field.annotation, prefix + name + ".", section or name))
        else:
            specs.append(_spec(prefix + name, section, field))
    return specs


def section_applies(section: str, stage: str, method: str) -> bool:
    """Whether a section belongs in a config of this stage and method (others would be refused)."""
    if section in METHOD_SECTIONS:
        return method in METHOD_SECTIONS[section]
    if section in STAGE_NAMES:
        return section == stage
    return True


def section_descriptions() -> dict[str, str]:
    return {
        name: field.description or ""
        for name, field in TunesmithConfig.model_fields.items()
        if _is_section(field.annotation)
    }


def parse_value(spec: FieldSpec, value: Any) -> Any:
    """A widget's value as the config value (ConfigError naming the key when it cannot be read)."""
    if spec.widget == "checkbox":
        return bool(value)
    if spec.widget == "choice":
        if value in (None, NONE_CHOICE, ""):
            return None
        for choice in spec.choices:
            if str(choice) == str(value):
                return choice
        raise ConfigError(f"{spec.key}: `{value}` is not one of {', '.join(map(str, spec.choices))}")
    text = "" if value is None else str(value).strip()
    if not text:  # an empty box: null where the key may be null, else the default
        return None if spec.optional else spec.default
    try:
        if spec.parse == "int":
            return int(text)
        if spec.parse == "float":
            return float(text)
        if spec.parse == "str":
            return text
        if spec.parse == "list":
            if text.startswith("["):
                return yaml.safe_load(text)
            if text in map(str, spec.choices):
                return text
            return [part.strip() for part in text.split(",") if part.strip()]
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = {"int": "a whole number", "float": "a number", "yaml": "YAML", "list": "a comma-separated list"}
        raise ConfigError(
            f"{spec.key}: `{text}` is not {kind.get(spec.parse, spec.parse)} ({str(exc).splitlines()[0]})"
        ) from None


def form_to_config(specs: list[FieldSpec], values: list[Any]) -> dict:
    """The config dict of the form: keys whose value differs from the default, in sections that
    apply to the chosen stage and method. ConfigError lists every field that cannot be read."""
    parsed, errors = {}, []
    for spec, value in zip(specs, values, strict=True):
        try:
            parsed[spec.key] = parse_value(spec, value)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("the form has values that cannot be read:\n  " + "\n  ".join(errors))
    stage, method = parsed.get("stage", "sft"), parsed.get("method", "lora")
    raw: dict = {}
    for spec in specs:
        value = parsed[spec.key]
        if spec.key not in ALWAYS and (value == spec.default or not section_applies(spec.section, stage, method)):
            continue
        node = raw
        *parents, leaf = spec.key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def config_from_form(specs: list[FieldSpec], values: list[Any]) -> tuple[dict, str]:
    """(config dict, YAML); ConfigError with every problem, read or validation, naming the keys."""
    raw = form_to_config(specs, values)
    validate_config(raw, {}, "the form")
    return raw, config_yaml(raw)


def config_yaml(raw: dict) -> str:
    head = "# written by `tunesmith ui`; run it with: tunesmith train THIS_FILE\n"
    return head + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def form_values(specs: list[FieldSpec], raw: dict) -> list[Any]:
    """The widgets' values for a config dict (loading a YAML into the form); keys not in `raw` get
    their defaults."""
    out = []
    for spec in specs:
        node: Any = raw
        for part in spec.key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        out.append(spec.shown(spec.default if node is KeyError else node))
    return out
