"""Typed config: schema (`TunesmithConfig`), YAML loading, overrides and validation."""

from tunesmith.config.loader import (
    apply_overrides,
    config_hash,
    describe_keys,
    dump_config,
    load_config,
    validate_config,
)
from tunesmith.config.methods import METHOD_NAMES
from tunesmith.config.schema import TunesmithConfig
from tunesmith.config.stages import STAGE_NAMES

__all__ = [
    "METHOD_NAMES",
    "STAGE_NAMES",
    "TunesmithConfig",
    "apply_overrides",
    "config_hash",
    "describe_keys",
    "dump_config",
    "load_config",
    "validate_config",
]
