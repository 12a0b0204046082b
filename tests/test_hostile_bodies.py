"""Every operation that takes a body, fed the hostile bodies of each class.

The hostile tests of each feature attack the endpoints they know; this one walks the
OpenAPI document instead, so an operation added later is attacked too: deeply nested
JSON (lists and objects), JSON of a million keys, a YAML alias bomb, broken YAML and
bytes that are no text at all. Every answer must be a 4xx JSON error with a code and a
short body, and ``/healthz`` must keep answering within 100 ms all the while.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI

from bastion.pipeline.engine import Engine
from tests.support.app import Api, running
from tests.support.auth import AUTH
from tests.support.hostile import nested_json, responsive, yaml_alias_bomb
from tests.support.settings import make_settings

pytestmark = pytest.mark.models
MAX_ERROR_BYTES = 16 * 1024


def _many_keys(n: int) -> str:
    return "{" + ",".join(f'"k{i}":1' for i in range(n)) + "}"


BODIES: dict[str, tuple[str, bytes]] = {
    "nested-list-100k": ("application/json", nested_json(100_000).encode()),
    "nested-object-5k": ("application/json", nested_json(5_000, "object").encode()),
    "nested-list-40": ("application/json", nested_json(40).encode()),
    "keys-1.5M": ("application/json", _many_keys(1_500_000).encode()),
    "yaml-alias-bomb": ("application/yaml", yaml_alias_bomb(9).encode()),
    "yaml-python-tag": ("application/yaml", b"a: !!python/object/apply:os.system ['true']\n"),
    "yaml-control-char": ("application/yaml", b"name: a\x1a\n"),
    "binary": ("application/json", bytes(range(256)) * 64),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(engine: Engine, data_root: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        data_root / "hostile-bodies",
        jobs={"run_worker": False},
        live={"run_sessions": False},
    )
    async with running(settings, engine, raise_app_exceptions=False) as started:
        yield started


def _path(path: str, operation: dict[str, Any]) -> str:
    for param in operation.get("parameters", []):
        if param.get("in") != "path":
            continue
        kind = param.get("schema", {}).get("type")
        path = path.replace("{" + param["name"] + "}", "1" if kind == "integer" else "x1")
    return path


def _operations_with_bodies(app: FastAPI) -> list[tuple[str, str]]:
    document = app.openapi()
    found = []
    for path, item in document["paths"].items():
        for method in ("post", "put", "patch"):
            operation = item.get(method)
            if operation is not None and "requestBody" in operation:
                found.append((method.upper(), _path(path, operation)))
    return found


@pytest.mark.parametrize("body", sorted(BODIES))
async def test_every_body_taking_operation_refuses_hostile_bodies(api: Api, body: str) -> None:
    client = api.client
    content_type, data = BODIES[body]
    operations = _operations_with_bodies(api.app)
    assert len(operations) >= 15, operations  # the document really lists the bodies
    headers = {**AUTH, "Content-Type": content_type}
    answers = []
    async with responsive(client):
        for method, path in operations:
            r = await client.request(method, path, content=data, headers=headers)
            answers.append((method, path, r))
    for method, path, r in answers:
        where = f"{method} {path} ({body})"
        assert 400 <= r.status_code < 500, f"{where}: {r.status_code} {r.text[:300]}"
        assert len(r.content) < MAX_ERROR_BYTES, f"{where}: {len(r.content)} bytes"
        assert r.json()["error"]["code"], where
