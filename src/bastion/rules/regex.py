"""Tenants' regular expressions, run in linear time by RE2.

Rule sets carry regular expressions written by tenants (``channel_pattern``, text and
URL conditions) that run on every channel name, OCR line and URL. Python's ``re``
backtracks: ``^(a+)+$`` on thirty ``a`` and a ``!`` holds the interpreter for
seconds. RE2 (``google-re2``) matches in time linear in the text, whatever the pattern.

A pattern is written in Python syntax and keeps Python's meaning on text:

* Python's parser checks it first, so a syntax error points at the character;
* what RE2 cannot run in linear time (backreferences, lookarounds, conditionals,
  atomic groups, possessive repeats) and what it does not read (``(?x)``, comments,
  repeats over 1000) are refused with the position of the construct;
* ``\\d``, ``\\w`` and ``\\s`` (and ``\\D``, ``\\W``, ``\\S``) keep their Unicode meaning
  (RE2's own are ASCII), ``\\Z``, ``\\uXXXX``, ``\\UXXXXXXXX``, ``\\N{name}`` and
  ``{,n}`` are translated; ``\\b`` is a word boundary between ASCII word characters,
  and ``$`` matches at the very end of the text only (or at a line end with ``(?m)``);
* the compiled program is bounded (:data:`MAX_PROGRAM` instructions, and RE2's
  memory budget :data:`MAX_MEM`), so a pattern cannot grow a huge automaton.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

MAX_PATTERN_CHARS = 1000
MAX_PROGRAM = 30_000  # RE2 instructions in one pattern (a Unicode \w costs about 1350)
MAX_MEM = 2 << 20  # bytes RE2 may use for one pattern (program and DFA cache; past it, NFA)

Kind = Literal["bad_regex", "regex_unsupported", "regex_too_large"]

_WORD = r"\p{L}\p{N}_"
_DIGIT = r"\p{Nd}"
_SPACE = r"\t-\r\x{1c}-\x{20}\x{85}\p{Z}"
_IN_CLASS = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_OUTSIDE = {
    "d": _DIGIT,
    "D": r"\P{Nd}",
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "Z": r"\z",
}
# [^\W...]: word characters but not digits and/or '_' (letters, in Python's idiom)
_NEGATED_IDIOMS = {
    (frozenset("W"), frozenset()): f"[{_WORD}]",
    (frozenset("D"), frozenset()): _DIGIT,
    (frozenset("S"), frozenset()): f"[{_SPACE}]",
    (frozenset("W"), frozenset({_DIGIT})): r"[\p{L}\p{Nl}\p{No}_]",
    (frozenset("W"), frozenset("_")): r"[\p{L}\p{N}]",
    (frozenset("W"), frozenset({_DIGIT, "_"})): r"[\p{L}\p{Nl}\p{No}]",
}
_OPEN_MIN = re.compile(r"\{,(\d+)\}")


class RegexRefused(Exception):
    """A pattern Bastion does not run; ``position`` is a 0-based index into it."""

    def __init__(self, kind: Kind, position: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.position = position
        self.message = message


def _codepoint(value: int) -> str:
    return f"\\x{{{value:x}}}"


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """The RE2 form of the escape at ``pattern[i]`` (a backslash) and where it ends."""
    char = pattern[i + 1]
    if char in "uU":
        width = 4 if char == "u" else 8
        return _codepoint(int(pattern[i + 2 : i + 2 + width], 16)), i + 2 + width
    if char == "N":
        end = pattern.index("}", i)
        return _codepoint(ord(unicodedata.lookup(pattern[i + 3 : end]))), end + 1
    if in_class:
        if char in _IN_CLASS:
            return _IN_CLASS[char], i + 2
        if char == "b":
            return r"\x08", i + 2
        return pattern[i : i + 2], i + 2
    if char in _OUTSIDE:
        return _OUTSIDE[char], i + 2
    return pattern[i : i + 2], i + 2


def _class(pattern: str, start: int) -> tuple[str, int]:
    """The RE2 form of the class ``[...]`` at ``pattern[start]`` and where it ends.

    RE2 has no Unicode ``\\W``, ``\\D`` or ``\\S`` to put in a class: a class holding
    one becomes an alternation (``[\\W.]`` is ``(?:[^<word>]|[.])``); a negated one
    (``[^\\W\\d]``, letters) only in the usual spellings."""
    i = start + 1
    negated = pattern.startswith("^", i)
    i += negated
    items: list[str] = []
    shorthands: list[str] = []
    if pattern.startswith("]", i):  # a ']' first in a class is itself
        items.append(r"\]")
        i += 1
    while pattern[i] != "]":
        if pattern[i] == "\\":
            if pattern[i + 1] in "DWS":
                shorthands.append(pattern[i + 1])
                i += 2
                continue
            piece, i = _escape(pattern, i, True)
            items.append(piece)
        else:  # '[' and '^' are plain here in Python; RE2 reads '[:' and a first '^'
            items.append("\\" + pattern[i] if pattern[i] in "[^" else pattern[i])
            i += 1
    end = i + 1
    caret = "^" if negated else ""
    if not shorthands:
        return f"[{caret}{''.join(items)}]", end
    if not negated:
        parts = [f"[^{_IN_CLASS[s.lower()]}]" for s in shorthands]
        if items:
            parts.append(f"[{''.join(items)}]")
        return "(?:" + "|".join(parts) + ")", end
    idiom = _NEGATED_IDIOMS.get((frozenset(shorthands), frozenset(items)))
    if idiom is None:
        raise RegexRefused(
            "regex_unsupported",
            start,
            "a negated class holding \\W, \\D or \\S is not supported here; "
            "write the characters it should match instead",
        )
    return idiom, end


def to_re2(pattern: str) -> str:
    """The RE2 pattern with the meaning Python gives ``pattern`` (which must compile
    with Python's ``re``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            piece, i = _escape(pattern, i, False)
        elif char == "[":
            piece, i = _class(pattern, i)
        elif char == "{" and (open_min := _OPEN_MIN.match(pattern, i)) is not None:
            piece, i = "{0," + open_min.group(1) + "}", open_min.end()
        else:
            piece, i = char, i + 1
        out.append(piece)
    return "".join(out)


def _options(ignore_case: bool) -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False
    options.case_sensitive = not ignore_case
    return options


def _re2_message(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _refused(pattern: str, message: str) -> RegexRefused:
    if "too large" in message or "out of memory" in message:
        return RegexRefused(
            "regex_too_large", 0, f"regular expression is too large to run: {message}"
        )
    _, _, construct = message.partition(": ")
    if construct == "(?P":  # a named backreference, not the named group before it
        construct = "(?P="
    position = max(pattern.find(construct), 0) if construct else 0
    return RegexRefused(
        "regex_unsupported",
        position,
        f"regular expression not supported at position {position}: {message} (regular "
        "expressions run in linear time: no backreferences, lookarounds, conditionals, "
        "atomic groups, possessive repeats, comments, (?x), or repeats over 1000)",
    )


@dataclass(frozen=True, slots=True, eq=False)
class TenantRegex:
    """A tenant's pattern compiled for RE2; ``pattern`` is what the tenant wrote."""

    pattern: str
    ignore_case: bool
    program_size: int
    compiled: Any = field(repr=False)

    def search(self, text: str) -> str | None:
        """The first match in ``text`` (possibly empty), or None."""
        found = self.compiled.search(text)
        return None if found is None else str(found.group(0))


def compile_regex(pattern: str, *, ignore_case: bool = False) -> TenantRegex:
    """``pattern`` compiled for RE2, or :class:`RegexRefused` saying what and where."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RegexRefused(
            "regex_too_large",
            MAX_PATTERN_CHARS,
            f"regular expression is longer than {MAX_PATTERN_CHARS} characters",
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        pos = exc.pos if exc.pos is not None else 0
        raise RegexRefused(
            "bad_regex", pos, f"bad regular expression at position {pos}: {exc.msg}"
        ) from None
    except (OverflowError, RecursionError) as exc:  # a repeat count or nesting beyond reason
        raise RegexRefused("regex_too_large", 0, f"regular expression too large: {exc}") from None
    translated = to_re2(pattern)
    try:
        compiled = re2.compile(translated, _options(ignore_case))
    except re2.error as exc:
        raise _refused(pattern, _re2_message(exc)) from None
    size = int(compiled.programsize)
    if size > MAX_PROGRAM:
        raise RegexRefused(
            "regex_too_large",
            0,
            f"regular expression is too large to run: {size} RE2 instructions, at most "
            f"{MAX_PROGRAM} (a Unicode \\w costs about 1350; repeat fewer of them)",
        )
    return TenantRegex(pattern, ignore_case, size, compiled)
