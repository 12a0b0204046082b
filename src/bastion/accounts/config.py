"""Settings of people's accounts: session lifetimes, lockout, sign-in rate limits, cookie."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AccountsConfig(BaseModel):
    """How long portal sessions last and how sign-in is protected against guessing."""

    model_config = ConfigDict(extra="forbid")

    session_lifetime_s: float = Field(
        12 * 3600,
        gt=0,
        le=30 * 86_400,
        description="Absolute lifetime of a session from sign-in, however active it is.",
    )
    idle_timeout_s: float = Field(
        30 * 60,
        gt=0,
        description="A session unused for this long ends (at most session_lifetime_s).",
    )
    touch_interval_s: float = Field(
        60.0,
        ge=0,
        description="A session's last use is written at most this often (fewer writes; "
        "the idle timeout is exact to within this); below idle_timeout_s.",
    )
    lockout_after: int = Field(
        5, ge=1, le=1000, description="Wrong passwords in a row that lock an account."
    )
    lockout_s: float = Field(
        15 * 60, gt=0, le=86_400, description="How long a locked account stays locked."
    )
    attempts_per_minute_per_ip: int = Field(
        20, ge=1, description="Sign-in attempts one address may make in a minute."
    )
    attempts_per_minute_per_username: int = Field(
        10, ge=1, description="Sign-in attempts for one username (in one tenant) in a minute."
    )
    cookie_secure: bool = Field(
        True,
        description="Send the session cookie over HTTPS only (turn off only for plain "
        "HTTP on loopback).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.idle_timeout_s > self.session_lifetime_s:
            raise ValueError("idle_timeout_s must not exceed session_lifetime_s")
        if self.touch_interval_s >= self.idle_timeout_s:
            raise ValueError("touch_interval_s must be below idle_timeout_s")
        return self
