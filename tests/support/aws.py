"""Clients of the Rekognition-compatible endpoint for tests: access keys made through
the admin API, boto3 clients pointed at a served app, and requests signed by hand.

boto3 is synchronous: call its methods from async tests with ``asyncio.to_thread``,
since the served app runs on the test's own event loop (see
:func:`tests.support.app.serving`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.support.app import Api

REGION = "us-east-1"
CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET = "RekognitionService."


@dataclass(frozen=True)
class AwsKey:
    """An access key issued by ``POST /v1/aws-keys``."""

    id: str
    secret: str


async def new_aws_key(
    api: Api, admin: dict[str, str], scopes: tuple[str, ...] = ("moderate",), name: str = ""
) -> AwsKey:
    """A new access key of the tenant whose admin headers are ``admin``."""
    r = await api.client.post(
        "/v1/aws-keys", json={"name": name, "scopes": list(scopes)}, headers=admin
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return AwsKey(body["access_key_id"], body["secret_access_key"])


def rekognition(base_url: str, key: AwsKey, *, region: str = REGION, **config: Any) -> Any:
    """A boto3 Rekognition client on ``base_url``, signing with ``key``, one attempt per
    call (no retries: a test sees the first answer)."""
    options: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"}}
    options.update(config)
    return boto3.client(
        "rekognition",
        region_name=region,
        endpoint_url=base_url,
        aws_access_key_id=key.id,
        aws_secret_access_key=key.secret,
        config=Config(**options),
    )


def signed(
    base_url: str,
    key: AwsKey,
    operation: str,
    body: bytes | dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    region: str = REGION,
    service: str = "rekognition",
    signer: type[SigV4Auth] = SigV4Auth,
) -> AWSRequest:
    """A request signed as botocore signs it (``signer``: another signer), ready to be
    sent with :func:`send` as is or after a change."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"X-Amz-Target": TARGET + operation, "Content-Type": CONTENT_TYPE}
    all_headers.update(headers or {})
    request = AWSRequest(method="POST", url=base_url + "/", data=data, headers=all_headers)
    auth = signer(Credentials(key.id, key.secret), service, region)
    auth.add_auth(request)
    return request


async def send(
    client: httpx.AsyncClient, request: AWSRequest, body: bytes | None = None
) -> httpx.Response:
    """Send ``request`` (``body`` in place of the signed one) over ``client``."""
    data = request.body if body is None else body
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    return await client.post(request.url, content=data, headers=headers)
