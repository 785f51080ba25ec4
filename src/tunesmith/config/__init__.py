"""Typed config: schema (`TunesmithConfig`), YAML loading, overrides and validation."""

from tunesmith.config.loader import (
    apply_overrides,
    config_hash,
    describe_keys,
    dump_config,
    load_config,
    validate_config,
)
from tunesmith.config.schema import METHODS, STAGES, TunesmithConfig

__all__ = [
    "METHODS",
    "STAGES",
    "TunesmithConfig",
    "apply_overrides",
    "config_hash",
    "describe_keys",
    "dump_config",
    "load_config",
    "validate_config",
]
