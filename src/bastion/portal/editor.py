"""Text editors in the portal: a document's text with its problems placed at their lines.

The rule set, policy and list editors show a text in a textarea beside a gutter of line
numbers. When the code the API runs refuses the text, its error lists each problem with
a path, a line and a column (``details['errors']``); here they become :class:`Problem`
rows that carry the line's own text and a caret under the column, and the gutter marks
every line that has one. Nothing is trusted: texts and messages are escaped by the
templates like everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData, UploadFile

from bastion.errors import BastionError, InputError

MAX_GUTTER_LINES = 20_000
"""Line numbers drawn at most (a longer text is refused by its parser anyway)."""
MAX_CARET_COLUMN = 400


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a text: a message, where it is, and the line it is on."""

    message: str
    path: str = ""
    line: int | None = None
    column: int | None = None
    code: str | None = None
    source: str | None = None

    @property
    def caret(self) -> str:
        """Spaces and a ``^`` under the column, for the line shown above it."""
        if self.column is None or self.column < 1:
            return ""
        return " " * min(self.column - 1, MAX_CARET_COLUMN) + "^"


@dataclass
class Editor:
    """What the editor template draws: the field, its text and its problems."""

    name: str
    text: str
    label: str = ""
    readonly: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return min(self.text.count("\n") + 1, MAX_GUTTER_LINES)

    @property
    def rows(self) -> int:
        return max(12, min(self.lines + 2, 36))

    @property
    def marks(self) -> dict[int, str]:
        """Lines with problems, and their messages (the gutter's titles)."""
        out: dict[int, list[str]] = {}
        for p in self.problems:
            if p.line is not None:
                out.setdefault(p.line, []).append(p.message)
        return {line: "; ".join(messages) for line, messages in out.items()}


def normalise(text: str) -> str:
    """A textarea's text with the browser's CRLF line ends made LF."""
    return text.replace("\r\n", "\n")


def form_text(form: FormData, name: str, max_chars: int) -> str:
    """A text field of a form ("" when absent); longer than ``max_chars``, or a file
    where text is expected, is a 400."""
    value = form.get(name)
    if value is None:
        return ""
    if isinstance(value, UploadFile):
        raise InputError(f"{name!r} must be a text field, not a file")
    if len(value) > max_chars:
        raise InputError(
            f"{name!r} is longer than {max_chars} characters",
            code="field_too_long",
            status=413,
        )
    return value


def source_line(text: str, line: int | None) -> str | None:
    """Line ``line`` (1-based) of ``text``, or None when there is none."""
    if line is None or line < 1:
        return None
    lines = text.split("\n")
    return lines[line - 1].rstrip("\r") if line <= len(lines) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def located(errors: Iterable[Mapping[str, Any]], text: str) -> list[Problem]:
    """Problems from the ``{path, line, column, message, code}`` rows that rule set and
    policy errors carry."""
    out: list[Problem] = []
    for e in errors:
        line = _int(e.get("line"))
        out.append(
            Problem(
                message=str(e.get("message", "")),
                path=str(e.get("path", "") or ""),
                line=line,
                column=_int(e.get("column")),
                code=str(e["code"]) if e.get("code") is not None else None,
                source=source_line(text, line),
            )
        )
    return out


def problems_of(error: BastionError, text: str) -> list[Problem]:
    """The problems an error lists with their lines; none when it lists none (its
    message says it all then)."""
    errors = error.details.get("errors") if error.details else None
    if not isinstance(errors, list):
        return []
    return located([e for e in errors if isinstance(e, Mapping) and "line" in e], text)
