"""Load policies from YAML with errors that point at the line and column.

Policies come from tenants (``PUT /v1/policies/{name}``, ``POST /v1/policies/validate``)
and from files, so they are read with bounds (:data:`POLICY_LIMITS`): at most
:data:`MAX_POLICY_BYTES` bytes, :data:`MAX_DEPTH` levels and :data:`MAX_VALUES` values,
no aliases, no tags other than plain data, no key given twice
(:mod:`bastion.parsing.yaml_doc`). Every problem is an ``invalid_policy`` (422) error
with line numbers, or ``policy_too_large`` (413) over the limits; at most
:data:`MAX_ERRORS_SHOWN` errors are listed (``errors_omitted`` counts the rest).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.errors import InputError, PolicyError
from bastion.parsing.yaml_doc import (
    YamlDocError,
    YamlLimits,
    collector_paused,
    compose_yaml,
    construct_yaml,
)
from bastion.policy.model import Policy

Path_ = tuple[str | int, ...]

MAX_POLICY_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 50_000
POLICY_LIMITS = YamlLimits(max_bytes=MAX_POLICY_BYTES, max_depth=MAX_DEPTH, max_nodes=MAX_VALUES)
MAX_ERRORS_SHOWN = 50
_IN_MESSAGE = 5


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


def _error(source: str, errors: list[dict[str, Any]], what: str = "invalid policy") -> PolicyError:
    """One PolicyError listing at most MAX_ERRORS_SHOWN of ``errors``."""
    first = errors[0]
    summary = "; ".join(
        f"line {e['line']}: {e['path'] or '<root>'}: {e['message']}" for e in errors[:_IN_MESSAGE]
    )
    if len(errors) > _IN_MESSAGE:
        summary += f"; and {len(errors) - _IN_MESSAGE} more"
    details: dict[str, Any] = {"errors": errors[:MAX_ERRORS_SHOWN]}
    if len(errors) > MAX_ERRORS_SHOWN:
        details["errors_omitted"] = len(errors) - MAX_ERRORS_SHOWN
    return PolicyError(
        f"{source}:{first['line']}:{first['column']}: {what}: {summary}", details=details
    )


def _yaml_error(exc: YamlDocError, source: str) -> PolicyError:
    prefix = "YAML syntax: " if exc.code == "yaml_syntax" else ""
    err = {
        "line": exc.line,
        "column": exc.column,
        "path": "",
        "message": prefix + exc.problem,
        "code": exc.code,
    }
    error = _error(source, [err], "YAML error" if prefix else "policy refused")
    if exc.status == 413:
        error.code, error.status = "policy_too_large", 413
    return error


def parse_policy(text: str | bytes, *, source: str = "<policy>") -> Policy:
    """Parse and validate a YAML policy; raise PolicyError with line-numbered errors."""
    with collector_paused():
        return _parse_policy(text, source)


def _parse_policy(text: str | bytes, source: str) -> Policy:
    try:
        node = compose_yaml(text, POLICY_LIMITS, source=source)
        data: Any = construct_yaml(node, source=source)
    except YamlDocError as exc:
        raise _yaml_error(exc, source) from None
    if node is None or not isinstance(data, dict):
        err = {"line": 1, "column": 1, "path": "", "message": "a policy must be a YAML mapping"}
        raise _error(source, [err])
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
        raise _error(source, errors) from None


def read_policy_text(data: str | bytes, *, name: str | None = None) -> tuple[Policy, str]:
    """A policy a tenant sends, and its text: not empty (400 ``empty_input``), parsed
    and validated (:func:`parse_policy`), and named ``name`` when one is given
    (400 ``policy_name_mismatch``)."""
    if not data.strip():
        raise InputError("empty body: send a YAML policy", code="empty_input")
    policy = parse_policy(data)
    if name is not None and policy.name != name:
        raise InputError(
            f"policy name in the body ({policy.name!r}) differs from the URL ({name!r})",
            code="policy_name_mismatch",
        )
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    return policy, text


def default_policy_text() -> str:
    return resources.files("bastion.policy").joinpath("default.yaml").read_text("utf-8")


def default_policy() -> Policy:
    return parse_policy(default_policy_text(), source="default.yaml")


def dump_policy(policy: Policy) -> str:
    return yaml.safe_dump(
        policy.model_dump(mode="json", exclude_defaults=True), sort_keys=False, allow_unicode=True
    )
