"""What every location's options have in common; each kind module adds its own fields."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOCATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")
UPLOAD_WINDOW = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$")


class LocationOptionsBase(BaseModel):
    """One entry of the `locations` option."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    envelope: bool = True
    upload_limit_mbit: float | None = None
    upload_window: str | None = None
    # Where the copy physically is: the 3-2-1 verdict counts off-site copies. Each kind has a
    # sensible default (remote servers are off-site, folders and SMB shares are not).
    offsite: bool | None = None
    # Retention for this location only; unset rules use the add-on's top-level ones.
    keep_last: int | None = Field(default=None, ge=0, le=1000)
    keep_days: int | None = Field(default=None, ge=0, le=36500)
    keep_daily: int | None = Field(default=None, ge=0, le=1000)
    keep_weekly: int | None = Field(default=None, ge=0, le=1000)
    keep_monthly: int | None = Field(default=None, ge=0, le=1000)
    keep_yearly: int | None = Field(default=None, ge=0, le=100)

    @field_validator("upload_limit_mbit")
    @classmethod
    def _limit(cls, value: float | None) -> float | None:
        if value is not None and not 0.1 <= value <= 10_000:
            raise ValueError("must be between 0.1 and 10000 megabits per second, e.g. 20; leave it out for no limit")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LOCATION_NAME.match(value):
            raise ValueError(
                "must be 1-40 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("upload_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not UPLOAD_WINDOW.match(value) or value[:5] == value[6:]:
            raise ValueError(
                "must be two different times HH:MM-HH:MM, e.g. 01:00-06:00 (may pass midnight: 22:00-06:00)"
            )
        return value
