"""Bounds checked before validation, so an oversized document is refused at once."""

from __future__ import annotations

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def at_most(limit: int) -> BeforeValidator:
    """Refuse a list longer than ``limit`` before any of its items is validated.

    ``Field(max_length=...)`` is checked only after every item was validated, in one
    call that holds the interpreter: a rule set of 15,000 rules took 25-100 ms before it
    was refused as too long, stalling every other request of the process meanwhile."""

    def check(value: object) -> object:
        if isinstance(value, list | tuple) and len(value) > limit:
            raise PydanticCustomError(
                "too_long",
                "List should have at most {max_length} items, not {actual_length}",
                {"max_length": limit, "actual_length": len(value)},
            )
        return value

    return BeforeValidator(check)
