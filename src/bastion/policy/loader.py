"""Load policies from YAML with errors that point at the line and column."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.errors import PolicyError
from bastion.policy.model import Policy

Path_ = tuple[str | int, ...]


def _positions(node: yaml.Node, path: Path_, out: dict[Path_, tuple[int, int]]) -> None:
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*path, str(key.value))] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _positions(value, (*path, str(key.value)), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, (*path, i), out)


def _locate(loc: tuple[str | int, ...], positions: dict[Path_, tuple[int, int]]) -> tuple[int, int]:
    path = tuple(loc)
    while path:
        if path in positions:
            return positions[path]
        path = path[:-1]
    return positions.get((), (1, 1))


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse and validate a YAML policy; raise PolicyError with line-numbered errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        err = {"line": line, "column": col, "path": "", "message": f"YAML syntax: {exc.problem}"}
        raise PolicyError(
            f"{source}:{line}:{col}: YAML syntax error: {exc.problem}", details={"errors": [err]}
        ) from exc
    if node is None or not isinstance(data, dict):
        err = {"line": 1, "column": 1, "path": "", "message": "a policy must be a YAML mapping"}
        raise PolicyError(
            f"{source}:1:1: a policy must be a YAML mapping", details={"errors": [err]}
        )
    positions: dict[Path_, tuple[int, int]] = {}
    _positions(node, (), positions)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            # drop pydantic's internal loc parts such as 'function-after[...]'
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
            line, col = _locate(loc, positions)
            msg = e["msg"].removeprefix("Value error, ")
            errors.append(
                {"line": line, "column": col, "path": ".".join(str(p) for p in loc), "message": msg}
            )
        first = errors[0]
        summary = "; ".join(
            f"line {e['line']}: {e['path'] or '<root>'}: {e['message']}" for e in errors
        )
        raise PolicyError(
            f"{source}:{first['line']}:{first['column']}: invalid policy: {summary}",
            details={"errors": errors},
        ) from exc


def default_policy_text() -> str:
    return resources.files("bastion.policy").joinpath("default.yaml").read_text("utf-8")


def default_policy() -> Policy:
    return parse_policy(default_policy_text(), source="default.yaml")


def dump_policy(policy: Policy) -> str:
    return yaml.safe_dump(
        policy.model_dump(mode="json", exclude_defaults=True), sort_keys=False, allow_unicode=True
    )
