"""The registry reference syntax: `registry:NAME`, `registry:NAME@ALIAS`, `registry:NAME:VERSION`."""

from __future__ import annotations

from tunesmith.errors import ConfigError

PREFIX = "registry:"


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`N`, `N@alias` or `N:version` (with or without `registry:`) -> (name, alias, version)."""
    ref = ref[len(PREFIX) :] if ref.startswith(PREFIX) else ref
    name, alias, version = ref, None, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif ":" in ref:
        name, version = ref.rsplit(":", 1)
        if not version.isdigit():
            raise ConfigError(
                f"registry reference `{ref}`: the version after `:` is a number (N:3); use N@ALIAS for an alias"
            )
    if not name or alias == "":
        raise ConfigError(f"registry reference `{ref}`: write NAME, NAME@ALIAS or NAME:VERSION")
    return name, alias, version
