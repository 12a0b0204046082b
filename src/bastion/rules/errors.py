"""Rule validation problems and the errors that carry them to the API.

Every problem is an :class:`Issue`: a path into the rule document (``rules.2.text.regex.0``)
and a message. :class:`RulesError` turns a list of them into a 4xx error whose
``details['errors']`` holds ``{path, line, column, message}`` for each (and ``code`` where
the problem has a stable one, e.g. ``yaml_alias`` or ``regex_unsupported``): at most
:data:`MAX_ERRORS_SHOWN` of them, with ``errors_omitted`` counting the rest, so a hostile
document cannot make a huge error body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.errors import BastionError

Path = tuple[str | int, ...]
Position = tuple[int | None, int | None]
MAX_ERRORS_SHOWN = 50
_IN_MESSAGE = 5  # errors summed up in the message itself


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem at ``path``; ``offset`` is a 0-based position inside a string value
    (where a regular expression went wrong), used to point at the exact column; ``code``
    a stable name for the kind of problem, where it has one."""

    path: Path
    message: str
    offset: int | None = None
    code: str | None = None

    def under(self, prefix: Path) -> Issue:
        return Issue((*prefix, *self.path), self.message, self.offset, self.code)


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


class RulesError(BastionError):
    """Rules that do not validate; ``details['errors']`` lists every problem found."""

    code = "invalid_rules"
    status = 422

    def __init__(
        self,
        issues: Sequence[Issue],
        *,
        locate: Callable[[Issue], Position] | None = None,
        code: str | None = None,
        status: int | None = None,
        source: str = "rules",
    ) -> None:
        self.issues = list(issues)
        errors: list[dict[str, Any]] = []
        for issue in self.issues[:MAX_ERRORS_SHOWN]:
            line, column = locate(issue) if locate is not None else (None, None)
            error: dict[str, Any] = {
                "path": dotted(issue.path),
                "line": line,
                "column": column,
                "message": issue.message,
            }
            if issue.code is not None:
                error["code"] = issue.code
            errors.append(error)
        more = len(self.issues) - len(errors)
        summary = "; ".join(
            (f"line {e['line']}: " if e["line"] is not None else "")
            + f"{e['path'] or '<root>'}: {e['message']}"
            for e in errors[:_IN_MESSAGE]
        )
        if len(self.issues) > _IN_MESSAGE:
            summary += f"; and {len(self.issues) - _IN_MESSAGE} more"
        details: dict[str, Any] = {"errors": errors}
        if more:
            details["errors_omitted"] = more
        super().__init__(f"invalid {source}: {summary}", code=code, status=status, details=details)

    def relocated(self, locate: Callable[[Issue], Position]) -> RulesError:
        """The same error with line and column found by ``locate``."""
        return type(self)(self.issues, locate=locate, code=self.code, status=self.status)


class RuleSetConflict(RulesError):
    """A name or channel already taken by another of the tenant's rule sets."""

    code = "rule_set_conflict"
    status = 409
