"""What every location's options have in common; each kind module adds its own fields."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

LOCATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")


class LocationOptionsBase(BaseModel):
    """One entry of the `locations` option."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    envelope: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LOCATION_NAME.match(value):
            raise ValueError(
                "must be 1-40 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
            )
        return value
