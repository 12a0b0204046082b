"""Read rule sets from YAML or JSON with errors that point at the line and column.

Every problem is reported, not just the first: structure and ranges from model
validation, checks across fields, YAML keys given twice. A bad regular expression is
pointed at to the character where the value is written plainly or quoted without
escapes.

Documents come from tenants, so they are read with bounds (:data:`RULES_LIMITS`): at
most :data:`MAX_RULES_BYTES` bytes, :data:`MAX_DEPTH` levels and :data:`MAX_VALUES`
values, YAML without aliases or tags other than plain data
(:mod:`bastion.parsing.yaml_doc`), JSON through :mod:`bastion.parsing.json_doc`.
Parsing takes up to a few hundred milliseconds for the largest documents: the API
calls it from a worker thread.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bastion.parsing.json_doc import InvalidJson, JsonTooDeep, TooManyItems, parse_json
from bastion.parsing.yaml_doc import (
    YamlDocError,
    YamlLimits,
    YamlSyntaxError,
    collector_paused,
    compose_yaml,
    construct_yaml,
)
from bastion.rules.errors import Issue, Path, Position, RulesError
from bastion.rules.spec import REGEX_ERRORS, RulesDocument, RuleSetSpec

Format = Literal["yaml", "json"]
M = TypeVar("M", bound=BaseModel)

MAX_RULES_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 50_000
RULES_LIMITS = YamlLimits(max_bytes=MAX_RULES_BYTES, max_depth=MAX_DEPTH, max_nodes=MAX_VALUES)
_TOO_LARGE = "rules_too_large"


class Locator:
    """Finds where a path of the parsed document is written in its text."""

    def __init__(self, text: str, root: yaml.Node | None) -> None:
        self.text = text
        self.nodes: dict[Path, yaml.Node] = {}
        self.duplicates: list[Issue] = []
        if root is not None:  # composed without aliases: a tree, each node reached once
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path) -> None:
        self.nodes[path] = node
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in keys:
                    self.duplicates.append(
                        Issue((*path, name), f"key {name!r} given twice", code="yaml_duplicate_key")
                    )
                keys.add(name)
                self._walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def _column(self, node: yaml.Node, offset: int) -> int | None:
        """The column of character ``offset`` of a one-line scalar written as its value."""
        start, end = node.start_mark, node.end_mark
        if not isinstance(node, yaml.ScalarNode) or start.line != end.line:
            return None
        raw = self.text[start.index : end.index]
        if node.style in (None, "") and raw == node.value:
            return int(start.column) + 1 + offset
        if node.style in ("'", '"') and raw[1:-1] == node.value:
            return int(start.column) + 2 + offset
        return None

    def __call__(self, issue: Issue) -> Position:
        path = issue.path
        while True:
            node = self.nodes.get(path)
            if node is not None:
                line, column = node.start_mark.line + 1, node.start_mark.column + 1
                # a lone string stands for a one-item list: offsets still apply to it
                rest = issue.path[len(path) :]
                if issue.offset is not None and rest in ((), (0,)):
                    column = self._column(node, issue.offset) or column
                return int(line), int(column)
            if not path:
                return (None, None)
            path = path[:-1]


@dataclass(frozen=True)
class Parsed(Generic[M]):
    """A validated model and where its parts are written, to place later errors."""

    value: M
    locate: Locator

    def error(self, issues: Sequence[Issue]) -> RulesError:
        return RulesError(issues, locate=self.locate)

    @contextmanager
    def locating(self) -> Iterator[None]:
        """Re-raise a :class:`RulesError` from inside with this text's lines and columns."""
        try:
            yield
        except RulesError as exc:
            raise exc.relocated(self.locate) from exc


def _quote_hint(locator: Locator, loc: Path) -> str:
    """For a name YAML read as a boolean or number (``off``, ``no``, ``1e3``)."""
    node = locator.nodes.get(loc)
    if (
        isinstance(node, yaml.ScalarNode)
        and node.style in (None, "")
        and node.tag != ("tag:yaml.org,2002:str")
    ):
        return f"; YAML reads {node.value} as a {node.tag.rsplit(':', 1)[-1]}: write '{node.value}'"
    return ""


def _issues(exc: ValidationError, locator: Locator) -> list[Issue]:
    out: list[Issue] = []
    for e in exc.errors():
        loc: Path = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        ctx = e.get("ctx") or {}
        kind = e["type"]
        if kind == "rule_checks":
            out.extend(issue.under(loc) for issue in ctx["issues"])
        elif kind in REGEX_ERRORS:
            out.append(Issue(loc, e["msg"], offset=int(ctx["position"]), code=kind))
        elif kind == "extra_forbidden" and loc:
            out.append(Issue(loc, f"unknown field {loc[-1]!r}"))
        elif kind == "missing" and loc:
            out.append(Issue(loc, f"missing required field {loc[-1]!r}"))
        elif kind == "string_type":
            out.append(Issue(loc, e["msg"] + _quote_hint(locator, loc)))
        else:
            out.append(Issue(loc, e["msg"].removeprefix("Value error, ")))
    return out


def _at(line: int | None, column: int | None) -> Callable[[Issue], Position]:
    return lambda _: (line, column)


def _syntax(fmt: Format, line: int, column: int, problem: str, code: str) -> RulesError:
    return RulesError(
        [Issue((), f"{fmt.upper()} syntax: {problem}", code=code)], locate=_at(line, column)
    )


def _yaml_error(exc: YamlDocError) -> RulesError:
    """A YAML problem (syntax, alias, tag, limits) as the rules error, 413 when too large."""
    if isinstance(exc, YamlSyntaxError):
        return _syntax("yaml", exc.line, exc.column, exc.problem, exc.code)
    large = exc.status == 413
    return RulesError(
        [Issue((), exc.problem, code=exc.code)],
        locate=_at(exc.line, exc.column),
        code=_TOO_LARGE if large else None,
        status=413 if large else None,
    )


def _json_data(text: str) -> Any:
    try:
        return parse_json(text, max_depth=MAX_DEPTH, max_items=MAX_VALUES)
    except InvalidJson as exc:
        try:  # bounded already (size, items): parse again for the position
            json.loads(text)
        except json.JSONDecodeError as where:
            raise _syntax("json", where.lineno, where.colno, where.msg, exc.code) from None
        except (ValueError, RecursionError):
            pass
        raise _syntax("json", 1, 1, exc.message, exc.code) from None
    except JsonTooDeep as exc:
        raise RulesError([Issue((), exc.message, code=exc.code)], locate=_at(1, 1)) from None
    except TooManyItems as exc:
        raise RulesError(
            [Issue((), exc.message, code=exc.code)], locate=_at(1, 1), code=_TOO_LARGE, status=413
        ) from None


def _load(text: str, fmt: Format) -> tuple[Any, Locator]:
    if len(text) > MAX_RULES_BYTES or len(text.encode("utf-8", "replace")) > MAX_RULES_BYTES:
        raise RulesError(
            [Issue((), f"rules are over the limit of {MAX_RULES_BYTES} bytes", code=_TOO_LARGE)],
            locate=_at(1, 1),
            code=_TOO_LARGE,
            status=413,
        )
    if fmt == "json":
        data = _json_data(text)
        try:  # JSON is YAML: its nodes give the positions
            root = compose_yaml(text, RULES_LIMITS, unique_keys=False)
        except YamlDocError:
            root = None
        return data, Locator(text, root)
    try:
        root = compose_yaml(text, RULES_LIMITS, unique_keys=False)
        locator = Locator(text, root)
        if locator.duplicates:
            raise RulesError(locator.duplicates, locate=locator)
        return construct_yaml(root), locator
    except YamlDocError as exc:
        raise _yaml_error(exc) from None


def parse(text: str, model: type[M], *, fmt: Format = "yaml", what: str) -> Parsed[M]:
    """Parse ``text`` and validate it as ``model``; RulesError lists every problem."""
    with collector_paused():
        return _parse(text, model, fmt, what)


def _parse(text: str, model: type[M], fmt: Format, what: str) -> Parsed[M]:
    data, locator = _load(text, fmt)
    if not isinstance(data, dict):
        raise RulesError([Issue((), f"{what} must be a mapping")], locate=locator)
    try:
        return Parsed(model.model_validate(data), locator)
    except ValidationError as exc:
        raise RulesError(_issues(exc, locator), locate=locator) from exc


def parse_rule_set(text: str, *, fmt: Format = "yaml") -> Parsed[RuleSetSpec]:
    """One rule set (a mapping with name, channel or channel_pattern, rules, ...)."""
    return parse(text, RuleSetSpec, fmt=fmt, what="a rule set")


def parse_document(text: str, *, fmt: Format = "yaml") -> Parsed[RulesDocument]:
    """A document of rule sets: ``rule_sets: [...]``."""
    return parse(text, RulesDocument, fmt=fmt, what="a rules document ('rule_sets: [...]')")


def load_rules_yaml(text: str) -> list[RuleSetSpec]:
    """Rule sets from a YAML document (``rule_sets: [...]``), validated; for rule sets
    kept in configuration rather than in the database."""
    return parse_document(text).value.rule_sets


def spec_data(spec: RuleSetSpec) -> dict[str, Any]:
    """A rule set as plain data, defaults left out (what is stored and exported)."""
    return spec.model_dump(mode="json", exclude_defaults=True)


def spec_version(spec: RuleSetSpec) -> str:
    """A short hash of the rule set's content: changes whenever anything in it does."""
    canon = json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def dump_rules_yaml(specs: Sequence[RuleSetSpec]) -> str:
    """A YAML document of rule sets that :func:`load_rules_yaml` reads back."""
    doc = {"rule_sets": [spec_data(s) for s in specs]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def dump_rule_set_yaml(spec: RuleSetSpec) -> str:
    """One rule set as YAML that :func:`parse_rule_set` reads back (defaults left out)."""
    return yaml.safe_dump(spec_data(spec), sort_keys=False, allow_unicode=True)
