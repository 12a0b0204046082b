"""Rekognition answers checked against botocore's service model.

botocore parses an answer by the operation's output shape and silently drops every member
it does not know, so a misspelled field (``ParentNme``) would pass a test that reads only
the parsed answer. :func:`shape_problems` walks the raw JSON against the shape instead:
every member must exist in the model, with the model's type, enum and range.
:func:`parse_raw` parses a body the way boto3 does, and :class:`RawResponses` keeps the
raw bodies and headers a boto3 client received (clients: :mod:`tests.support.aws`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.parsers import create_parser

SERVICE = "rekognition"


@cache
def service_model() -> ServiceModel:
    """Rekognition's service model as botocore ships it."""
    return botocore.session.get_session().get_service_model(SERVICE)


def operation(name: str) -> OperationModel:
    """The model of operation ``name``."""
    return service_model().operation_model(name)


def _number_problems(shape: Shape, value: float, path: str) -> list[str]:
    meta = shape.metadata
    out = []
    if not math.isfinite(value):
        out.append(f"{path}: {value} is not finite")
    if "min" in meta and value < meta["min"]:
        out.append(f"{path}: {value} is under the minimum {meta['min']}")
    if "max" in meta and value > meta["max"]:
        out.append(f"{path}: {value} is over the maximum {meta['max']}")
    return out


def shape_problems(shape: Shape, value: Any, path: str = "$") -> list[str]:
    """Every way ``value`` (raw JSON) departs from ``shape``: unknown members, wrong
    types, values outside an enum or a range. Empty when it conforms."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: a structure ({shape.name}) expected, got {type(value).__name__}"]
        members = shape.members
        out: list[str] = []
        for key, item in value.items():
            if key not in members:
                out.append(f"{path}.{key}: not a member of {shape.name}")
            else:
                out += shape_problems(members[key], item, f"{path}.{key}")
        return out
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: a list ({shape.name}) expected, got {type(value).__name__}"]
        return [
            p
            for i, item in enumerate(value)
            for p in shape_problems(shape.member, item, f"{path}[{i}]")
        ]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: a map expected"]
        return [
            p for k, v in value.items() for p in shape_problems(shape.value, v, f"{path}[{k!r}]")
        ]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: a string expected, got {type(value).__name__}"]
        if shape.enum and value not in shape.enum:
            return [f"{path}: {value!r} is not one of {shape.enum}"]
        return []
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: an integer expected, got {value!r}"]
        return _number_problems(shape, value, path)
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{path}: a number expected, got {value!r}"]
        return _number_problems(shape, float(value), path)
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: a boolean expected, got {value!r}"]
    if kind == "blob":
        return [] if isinstance(value, str) else [f"{path}: base64 text expected"]
    if kind == "timestamp":
        ok = isinstance(value, int | float | str) and not isinstance(value, bool)
        return [] if ok else [f"{path}: a timestamp expected"]
    return [f"{path}: unexpected shape type {kind}"]


def output_problems(op: str, body: dict[str, Any]) -> list[str]:
    """:func:`shape_problems` of ``body`` against the output shape of operation ``op``."""
    shape = operation(op).output_shape
    assert shape is not None
    return shape_problems(shape, body)


def parse_raw(op: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """``body`` parsed as boto3 parses the answer of ``op`` (without its metadata)."""
    parser = create_parser("json")
    response = {"status_code": status, "headers": {}, "body": body}
    parsed: dict[str, Any] = parser.parse(response, operation(op).output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


@dataclass
class Raw:
    """One answer as it came over the wire."""

    op: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class RawResponses:
    """The raw answers a boto3 client received, in order (its ``after-call`` event)."""

    seen: list[Raw] = field(default_factory=list)

    def attach(self, client: Any) -> None:
        """Keep every answer ``client`` receives from now on."""
        client.meta.events.register(f"after-call.{SERVICE}.*", self._after_call)

    def _after_call(self, http_response: Any, model: OperationModel, **_: Any) -> None:
        self.seen.append(
            Raw(
                model.name,
                int(http_response.status_code),
                {k.lower(): v for k, v in http_response.headers.items()},
                bytes(http_response.content),
            )
        )

    @property
    def last(self) -> Raw:
        assert self.seen, "no answer was received"
        return self.seen[-1]

    def conforming(self) -> dict[str, Any]:
        """The last answer's JSON, asserted to be a success conforming to its
        operation's output shape."""
        raw = self.last
        assert raw.status == 200, raw.body
        body = raw.json()
        problems = output_problems(raw.op, body)
        assert not problems, problems
        return body
