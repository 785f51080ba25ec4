"""The base of every config section, and the coercions several sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def paths_as_lists(values, keys: tuple[str, ...]):
    """A "before" validator's input with each of `keys` that holds one path (a string) made a list of it."""
    if isinstance(values, dict):
        for key in keys:
            if isinstance(values.get(key), str):
                values = {**values, key: [values[key]]}
    return values
