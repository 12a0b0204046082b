"""The Rekognition-compatible endpoint's door: access keys, Signature Version 4 and the
AWS JSON 1.1 protocol on ``POST /``, with the real boto3 client against a served app.

Most tests serve a few small operations of their own (under Rekognition's operation
names, so that boto3 calls them): they show who called and raise Bastion's errors, so
that authentication and the protocol are checked apart from the image operations; one
calls DetectModerationLabels as Bastion serves it, on the real models.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import pytest_asyncio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from pydantic import SecretStr
from sqlalchemy import text

from bastion.api.app import create_app
from bastion.aws import sigv4
from bastion.aws.call import AwsCall, AwsError, Handler, Params
from bastion.aws.config import AwsConfig
from bastion.aws.credentials import (
    KEY_ID_RE,
    SEED_FILE,
    AwsIdentity,
    derive_secret,
    master_secret,
)
from bastion.aws.protocol import max_body_bytes, operations
from bastion.config import Settings
from bastion.errors import CorruptMedia, ImageTooLarge, ModelUnavailable, Overloaded
from bastion.pipeline.engine import Engine
from bastion.store.repo import Principal
from tests.support.app import ServedApi, serving
from tests.support.auth import AUTH
from tests.support.aws import AwsKey, new_aws_key, rekognition, send, signed
from tests.support.media import benign_photos, encode
from tests.support.settings import make_settings

# ---- the operations this app serves ---------------------------------------------------


async def _list_collections(call: AwsCall, params: Params) -> dict[str, Any]:
    """Who called: the API key ids of the caller's tenant (tenant-scoped data)."""
    keys = await asyncio.to_thread(call.svc.repo.list_keys, call.principal.tenant_id)
    return {
        "CollectionIds": [call.principal.tenant_id, *(k.id for k in keys)],
        "FaceModelVersions": [str(len(json.dumps(params)))],
    }


async def _delete_collection(call: AwsCall, params: Params) -> dict[str, Any]:
    """Raises the error its ``CollectionId`` names."""
    kind = params.get("CollectionId")
    if kind == "corrupt":
        raise CorruptMedia("the image could not be decoded")
    if kind == "large":
        raise ImageTooLarge("the image has too many pixels")
    if kind == "busy":
        raise Overloaded("too many requests in progress")
    if kind == "replica":
        raise ModelUnavailable("the nsfw deployment did not answer within 30 s")
    if kind == "aws":
        raise AwsError("InvalidParameterException", "CollectionId is not valid")
    if kind == "crash":
        raise RuntimeError("password=hunter2 at /srv/secret/path")
    return {"StatusCode": 200}


OPERATIONS: dict[str, Handler] = {
    "ListCollections": _list_collections,
    "DeleteCollection": _delete_collection,
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServedApi]:
    settings = make_settings(tmp_path_factory.mktemp("aws-auth"), preload=False)
    app = create_app(settings, aws_operations=OPERATIONS)
    async with serving(settings, app=app) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(served: ServedApi) -> AwsKey:
    return await new_aws_key(served, AUTH, name="tests")


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _assert_aws_answer(r: httpx.Response) -> None:
    assert r.headers["content-type"] == "application/x-amz-json-1.1"
    assert uuid.UUID(r.headers["x-amzn-requestid"]).version == 4


def _error(r: httpx.Response) -> tuple[int, str, str]:
    _assert_aws_answer(r)
    body = r.json()
    assert set(body) == {"__type", "Message"}, body
    return r.status_code, body["__type"], body["Message"]


# ---- boto3 against the served app -----------------------------------------------------


async def test_a_good_signature_is_answered_with_the_tenants_own_data(
    served: ServedApi, key: AwsKey
) -> None:
    client = rekognition(served.base, key)
    out = await asyncio.to_thread(client.list_collections, MaxResults=7)
    assert out["CollectionIds"][0] == "default"
    assert out["FaceModelVersions"] == [str(len(json.dumps({"MaxResults": 7})))]
    assert uuid.UUID(out["ResponseMetadata"]["RequestId"]).version == 4
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/x-amz-json-1.1"


async def test_a_wrong_secret_is_an_invalid_signature(served: ServedApi, key: AwsKey) -> None:
    wrong = AwsKey(key.id, key.secret[:-2] + ("AA" if not key.secret.endswith("AA") else "BB"))
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(rekognition(served.base, wrong).list_collections)
    assert _code(exc) == "InvalidSignatureException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_an_unknown_key_is_unrecognized(served: ServedApi, key: AwsKey) -> None:
    unknown = AwsKey("BKIA" + "A" * 16, key.secret)
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(rekognition(served.base, unknown).list_collections)
    assert _code(exc) == "UnrecognizedClientException"
    # an AWS key id, or anything else, is no more known
    other = AwsKey("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(rekognition(served.base, other).list_collections)
    assert _code(exc) == "UnrecognizedClientException"


async def test_a_revoked_key_stops_working(served: ServedApi) -> None:
    fresh = await new_aws_key(served, AUTH)
    client = rekognition(served.base, fresh)
    await asyncio.to_thread(client.list_collections)
    r = await served.client.delete(f"/v1/aws-keys/{fresh.id}", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(client.list_collections)
    assert _code(exc) == "UnrecognizedClientException"


async def test_a_key_of_a_disabled_tenant_is_unrecognized(served: ServedApi) -> None:
    tenant = await served.new_tenant()
    k = await new_aws_key(served, tenant.headers)
    client = rekognition(served.base, k)
    await asyncio.to_thread(client.list_collections)
    with served.services.db_sessions.begin() as s:
        s.execute(
            text("UPDATE tenants SET disabled_at = CURRENT_TIMESTAMP WHERE id = :t"),
            {"t": tenant.id},
        )
    assert served.services.aws_keys is not None
    served.services.aws_keys.forget()  # what the cache's few seconds would do
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(client.list_collections)
    assert _code(exc) == "UnrecognizedClientException"


@pytest.mark.parametrize(("shift", "words"), [(-20, "Signature expired"), (20, "not yet current")])
async def test_a_clock_20_minutes_off_is_refused(
    served: ServedApi, key: AwsKey, shift: int, words: str
) -> None:
    client = rekognition(served.base, key)
    off = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=shift)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=off),
        pytest.raises(ClientError) as exc,
    ):
        await asyncio.to_thread(client.list_collections)
    assert _code(exc) == "InvalidSignatureException"
    assert words in exc.value.response["Error"]["Message"]
    # ten minutes off is within the 15 minutes AWS allows
    near = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=shift // 2)
    with mock.patch("botocore.auth.get_current_datetime", return_value=near):
        await asyncio.to_thread(client.list_collections)


async def test_a_key_of_tenant_a_never_sees_tenant_b(served: ServedApi) -> None:
    a, b = await served.new_tenant(), await served.new_tenant()
    ka, kb = await new_aws_key(served, a.headers), await new_aws_key(served, b.headers)
    seen_a = await asyncio.to_thread(rekognition(served.base, ka).list_collections)
    seen_b = await asyncio.to_thread(rekognition(served.base, kb).list_collections)
    keys_a = {k["id"] for k in (await served.client.get("/v1/keys", headers=a.headers)).json()}
    keys_b = {k["id"] for k in (await served.client.get("/v1/keys", headers=b.headers)).json()}
    assert seen_a["CollectionIds"][0] == a.id and set(seen_a["CollectionIds"][1:]) == keys_a
    assert seen_b["CollectionIds"][0] == b.id and set(seen_b["CollectionIds"][1:]) == keys_b
    assert not keys_a & keys_b
    # nor its access keys, nor can it revoke them
    listed = (await served.client.get("/v1/aws-keys", headers=a.headers)).json()
    assert [k["access_key_id"] for k in listed] == [ka.id]
    r = await served.client.delete(f"/v1/aws-keys/{kb.id}", headers=a.headers)
    assert r.status_code == 404
    await asyncio.to_thread(rekognition(served.base, kb).list_collections)


async def test_a_key_without_the_moderate_scope_is_denied(served: ServedApi) -> None:
    reader = await new_aws_key(served, AUTH, scopes=("read",))
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(rekognition(served.base, reader).list_collections)
    assert _code(exc) == "AccessDeniedException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_an_operation_not_served_is_unknown(served: ServedApi, key: AwsKey) -> None:
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(rekognition(served.base, key).describe_projects)
    assert _code(exc) == "UnknownOperationException"


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("corrupt", "InvalidImageFormatException", 400),
        ("large", "ImageTooLargeException", 400),
        ("busy", "ThrottlingException", 500),
        ("replica", "ThrottlingException", 500),
        ("aws", "InvalidParameterException", 400),
        ("crash", "InternalServerError", 500),
    ],
)
async def test_errors_of_an_operation_are_typed_as_rekognition_types_them(
    served: ServedApi, key: AwsKey, kind: str, code: str, status: int
) -> None:
    client = rekognition(served.base, key)
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(client.delete_collection, CollectionId=kind)
    assert _code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if code in client.exceptions._code_to_exception:  # typed by botocore's service model
        assert isinstance(exc.value, getattr(client.exceptions, code))
    assert "hunter2" not in str(exc.value) and "/srv" not in str(exc.value)


# ---- requests signed by hand ----------------------------------------------------------


async def test_a_body_changed_after_signing_is_refused(served: ServedApi, key: AwsKey) -> None:
    request = signed(served.base, key, "ListCollections", {"MaxResults": 1})
    assert (await send(served.client, request)).status_code == 200
    status, code, _ = _error(await send(served.client, request, b'{"MaxResults": 2}'))
    assert (status, code) == (400, "InvalidSignatureException")
    # a signed X-Amz-Content-SHA256 of the original body does not cover another body
    original = request.body
    pinned = signed(
        served.base,
        key,
        "ListCollections",
        original,
        headers={"X-Amz-Content-SHA256": hashlib.sha256(original).hexdigest()},
    )
    assert (await send(served.client, pinned)).status_code == 200
    status, code, message = _error(await send(served.client, pinned, b'{"MaxResults": 2}'))
    assert (status, code) == (400, "InvalidSignatureException")
    assert "x-amz-content-sha256" in message
    unsigned_payload = signed(
        served.base,
        key,
        "ListCollections",
        b"{}",
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    assert _error(await send(served.client, unsigned_payload))[1] == "InvalidSignatureException"


class _NoHost(SigV4Auth):  # type: ignore[misc]
    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = super().headers_to_sign(request)
        del chosen["host"]
        return chosen


async def test_unsigned_host_or_no_authorization_is_refused(served: ServedApi, key: AwsKey) -> None:
    request = signed(served.base, key, "ListCollections", {}, signer=_NoHost)
    assert "host" not in request.headers["Authorization"].split("SignedHeaders=")[1]
    status, code, message = _error(await send(served.client, request))
    assert (status, code) == (400, "IncompleteSignatureException")
    assert "Host" in message
    bare = await served.client.post(
        "/",
        content=b"{}",
        headers={
            "X-Amz-Target": "RekognitionService.ListCollections",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    assert _error(bare)[:2] == (403, "MissingAuthenticationTokenException")
    bearer = await served.client.post(
        "/",
        content=b"{}",
        headers={
            "X-Amz-Target": "RekognitionService.ListCollections",
            "Content-Type": "application/x-amz-json-1.1",
            **AUTH,
        },
    )
    assert _error(bearer)[:2] == (400, "IncompleteSignatureException")


async def test_a_scope_for_another_region_service_or_day_is_refused(
    served: ServedApi, key: AwsKey
) -> None:
    for request in (
        signed(served.base, key, "ListCollections", {}, region="eu-west-1"),
        signed(served.base, key, "ListCollections", {}, service="s3"),
    ):
        assert _error(await send(served.client, request))[:2] == (400, "InvalidSignatureException")
    request = signed(served.base, key, "ListCollections", {})
    auth = request.headers["Authorization"]
    day = auth.split("/")[1]
    other = (datetime.strptime(day, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    request.headers.replace_header("Authorization", auth.replace(f"/{day}/", f"/{other}/"))
    status, code, message = _error(await send(served.client, request))
    assert (status, code) == (400, "InvalidSignatureException")
    assert "Credential scope" in message


async def test_target_content_type_and_body_are_checked(served: ServedApi, key: AwsKey) -> None:
    unknown = await send(served.client, signed(served.base, key, "NoSuchThing", {}))
    assert _error(unknown)[:2] == (400, "UnknownOperationException")
    other_service = signed(
        served.base, key, "x", {}, headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"}
    )
    assert _error(await send(served.client, other_service))[1] == "UnknownOperationException"
    json_type = signed(
        served.base, key, "ListCollections", {}, headers={"Content-Type": "application/json"}
    )
    status, code, message = _error(await send(served.client, json_type))
    assert (status, code) == (415, "UnsupportedMediaTypeException")
    assert "application/x-amz-json-1.1" in message
    for body in (b"not json", b"[1, 2]", b'"text"', b"", b'{"a": [' * 40 + b"]}" * 40):
        r = await send(served.client, signed(served.base, key, "ListCollections", body))
        assert _error(r)[:2] == (400, "SerializationException"), body[:20]


async def test_a_body_of_the_largest_image_passes_and_a_larger_one_is_too_large(
    served: ServedApi, key: AwsKey
) -> None:
    limit = max_body_bytes(served.settings)
    assert limit >= 4 * 5 * 1024 * 1024 // 3  # a 5 MB image in base64
    padding = limit - len(b'{"MaxResults": 1, "X": ""}')
    body = json.dumps({"MaxResults": 1, "X": "A" * padding}).encode()
    assert len(body) <= limit
    ok = await send(served.client, signed(served.base, key, "ListCollections", body))
    assert ok.status_code == 200, ok.text[:200]
    _assert_aws_answer(ok)
    over = json.dumps({"MaxResults": 1, "X": "A" * (padding + 10)}).encode()
    request = signed(served.base, key, "ListCollections", over)
    r = await send(served.client, request)
    assert _error(r)[:2] == (400, "ImageTooLargeException")

    async def chunks() -> AsyncIterator[bytes]:  # no length declared: found while reading
        for start in range(0, len(over), 256 * 1024):
            yield over[start : start + 256 * 1024]

    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    r = await served.client.post(request.url, content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    assert _error(r)[:2] == (400, "ImageTooLargeException")
    # and boto3 sees the typed error, not a reset connection
    client = rekognition(served.base, key)
    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(client.list_collections, NextToken="A" * (limit + 10))
    assert _code(exc) == "ImageTooLargeException"


async def test_a_body_over_max_request_bytes_gets_an_aws_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, preload=False, max_request_bytes=32 * 1024)
    app = create_app(settings, aws_operations=OPERATIONS)
    async with serving(settings, app=app) as api:
        k = await new_aws_key(api, AUTH)
        body = json.dumps({"X": "A" * 40_000}).encode()
        r = await send(api.client, signed(api.base, k, "ListCollections", body))
        assert _error(r)[:2] == (400, "ImageTooLargeException")
        # other routes keep Bastion's own errors
        native = await api.client.post("/v1/moderate", content=body, headers=AUTH)
        assert native.status_code == 413 and native.json()["error"]["code"] == "request_too_large"


async def test_every_answer_has_a_request_id(served: ServedApi, key: AwsKey) -> None:
    ids = set()
    for request in (
        signed(served.base, key, "ListCollections", {}),
        signed(served.base, key, "NoSuchThing", {}),
        signed(served.base, AwsKey(key.id, "x" * 40), "ListCollections", {}),
        signed(served.base, key, "DeleteCollection", {"CollectionId": "crash"}),
    ):
        r = await send(served.client, request)
        _assert_aws_answer(r)
        ids.add(r.headers["x-amzn-requestid"])
    assert len(ids) == 4


async def test_last_use_is_recorded(served: ServedApi) -> None:
    fresh = await new_aws_key(served, AUTH)
    listed = {
        k["access_key_id"]: k
        for k in (await served.client.get("/v1/aws-keys", headers=AUTH)).json()
    }
    assert listed[fresh.id]["last_used_at"] is None
    await asyncio.to_thread(rekognition(served.base, fresh).list_collections)
    listed = {
        k["access_key_id"]: k
        for k in (await served.client.get("/v1/aws-keys", headers=AUTH)).json()
    }
    assert listed[fresh.id]["last_used_at"] is not None


# ---- the admin API --------------------------------------------------------------------


async def test_keys_are_issued_once_and_never_shown_again(served: ServedApi) -> None:
    r = await served.client.post(
        "/v1/aws-keys", json={"name": "uploader", "scopes": ["moderate"]}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert KEY_ID_RE.fullmatch(made["access_key_id"])
    assert len(made["secret_access_key"]) == 40
    listed = (await served.client.get("/v1/aws-keys", headers=AUTH)).text
    assert made["access_key_id"] in listed and made["secret_access_key"] not in listed
    assert "secret" not in listed
    # the database holds no secret either
    with served.services.db_sessions() as s:
        row = s.execute(
            text("SELECT * FROM aws_access_keys WHERE id = :i"), {"i": made["access_key_id"]}
        ).one()
    assert all(made["secret_access_key"] not in str(v) for v in row)


async def test_only_admins_manage_keys(served: ServedApi) -> None:
    tenant = await served.new_tenant()
    reader = await served.reader(tenant.headers)
    assert (await served.client.get("/v1/aws-keys", headers=reader)).status_code == 403
    r = await served.client.post("/v1/aws-keys", json={}, headers=reader)
    assert r.status_code == 403
    assert (await served.client.get("/v1/aws-keys")).status_code == 401
    bad = await served.client.post("/v1/aws-keys", json={"scopes": ["root"]}, headers=AUTH)
    assert bad.status_code == 422
    extra = await served.client.post("/v1/aws-keys", json={"tenant": "x"}, headers=AUTH)
    assert extra.status_code == 422
    gone = await served.client.delete("/v1/aws-keys/BKIA" + "Z" * 16, headers=AUTH)
    assert gone.status_code == 404


# ---- secrets: derived, seeded once ----------------------------------------------------


def test_the_seed_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = master_secret(settings)
    path = tmp_path / SEED_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert master_secret(settings) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    seeded = make_settings(tmp_path, aws=AwsConfig(secret_seed=SecretStr("s" * 40)))
    assert master_secret(seeded) == b"s" * 40 != first


def test_secrets_are_derived_from_the_master_the_id_and_the_salt() -> None:
    one = derive_secret(b"m" * 32, "BKIAAAAAAAAAAAAAAAAA", "00")
    assert len(one) == 40
    assert one == derive_secret(b"m" * 32, "BKIAAAAAAAAAAAAAAAAA", "00")
    assert one != derive_secret(b"n" * 32, "BKIAAAAAAAAAAAAAAAAA", "00")
    assert one != derive_secret(b"m" * 32, "BKIAAAAAAAAAAAAAAAAB", "00")
    assert one != derive_secret(b"m" * 32, "BKIAAAAAAAAAAAAAAAAA", "01")


# ---- sigv4 on botocore-signed requests ------------------------------------------------

KEY = "BKIAAAAAAAAAAAAAAAAA"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
IDENTITY = AwsIdentity(Principal("default", KEY, ("moderate",)), SECRET)


def _lookup(key_id: str) -> AwsIdentity | None:
    return IDENTITY if key_id == KEY else None


def _botocore_signed(
    url: str, body: bytes, headers: list[tuple[str, str]], *, region: str = "us-east-1"
) -> AWSRequest:
    request = AWSRequest(method="POST", url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # repeats are kept, as on the wire
    SigV4Auth(Credentials(KEY, SECRET), "rekognition", region).add_auth(request)
    return request


def _received(request: AWSRequest, host: str = "rekognition.example") -> sigv4.SignedRequest:
    """What a server receives from ``request``: raw path and query, headers as sent."""
    rest = request.url.split("://", 1)[1]
    path_query = rest[rest.index("/") :] if "/" in rest else "/"
    path, _, query = path_query.partition("?")
    headers = [("host", host)]
    headers += [
        (k.lower(), v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
    ]
    return sigv4.SignedRequest("POST", path, query, headers, request.body)


def _verify(received: sigv4.SignedRequest, **kw: Any) -> AwsIdentity:
    return sigv4.verify(received, region="us-east-1", max_skew_s=900, lookup=_lookup, **kw)


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://rekognition.example/", [("X-Amz-Target", "RekognitionService.DetectLabels")]),
        (
            "https://rekognition.example/a%20b/c~d?b=2&a=3&a=1&empty=&enc=%2F%20x",
            [("Content-Type", "application/x-amz-json-1.1")],
        ),
        (
            "https://rekognition.example/",
            [("X-Odd", "  spaced    out\tvalue  "), ("X-Odd", "second"), ("X-Empty", "")],
        ),
    ],
)
def test_botocore_signed_requests_verify(url: str, headers: list[tuple[str, str]]) -> None:
    request = _botocore_signed(url, b'{"MaxLabels": 3}', headers)
    received = _received(request)
    assert _verify(received) == IDENTITY
    # one byte of anything signed changes the verdict
    changes: list[sigv4.SignedRequest] = [
        sigv4.SignedRequest("PUT", received.path, received.query, received.headers, received.body),
        sigv4.SignedRequest(
            "POST", received.path + "x", received.query, received.headers, received.body
        ),
        sigv4.SignedRequest(
            "POST", received.path, received.query + "&z=1", received.headers, received.body
        ),
        sigv4.SignedRequest(
            "POST", received.path, received.query, received.headers, received.body + b" "
        ),
        sigv4.SignedRequest(
            "POST",
            received.path,
            received.query,
            [(k, v + "x") if k == headers[0][0].lower() else (k, v) for k, v in received.headers],
            received.body,
        ),
    ]
    for changed in changes:
        with pytest.raises(AwsError) as exc:
            _verify(changed)
        assert exc.value.code == "InvalidSignatureException"
    # headers nobody signed may change freely
    extra = sigv4.SignedRequest(
        "POST", received.path, received.query, [*received.headers, ("x-proxy", "1")], received.body
    )
    assert _verify(extra) == IDENTITY


def test_whitespace_inside_signed_values_is_trimmed_as_botocore_trims_it() -> None:
    request = _botocore_signed("https://rekognition.example/", b"{}", [("X-Odd", "a  b")])
    received = _received(request)
    respaced = sigv4.SignedRequest(
        "POST",
        received.path,
        received.query,
        [(k, " a \t b " if k == "x-odd" else v) for k, v in received.headers],
        received.body,
    )
    assert _verify(respaced) == IDENTITY


def test_the_date_header_may_stand_for_x_amz_date() -> None:
    request = _botocore_signed("https://rekognition.example/", b"{}", [("Date", "x")])
    assert "X-Amz-Date" not in request.headers
    assert _verify(_received(request)) == IDENTITY


def test_skew_scope_and_form_are_checked_before_the_signature() -> None:
    received = _received(_botocore_signed("https://rekognition.example/", b"{}", []))
    later = datetime.now(UTC) + timedelta(minutes=16)
    with pytest.raises(AwsError, match="Signature expired"):
        _verify(received, now=later)
    assert _verify(received, now=datetime.now(UTC) + timedelta(minutes=14)) == IDENTITY
    with pytest.raises(AwsError) as exc:
        sigv4.verify(received, region="eu-west-1", max_skew_s=900, lookup=_lookup)
    assert exc.value.code == "InvalidSignatureException"
    with pytest.raises(AwsError) as exc:
        sigv4.verify(received, region="us-east-1", max_skew_s=900, lookup=lambda _k: None)
    assert exc.value.code == "UnrecognizedClientException"
    token = sigv4.SignedRequest(
        "POST", "/", "", [*received.headers, ("x-amz-security-token", "t")], b"{}"
    )
    with pytest.raises(AwsError) as exc:
        _verify(token)
    assert exc.value.code == "UnrecognizedClientException"


@pytest.mark.parametrize(
    "value",
    [
        "AWS4-HMAC-SHA1 Credential=a/20260101/us-east-1/rekognition/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/rekognition, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/rekognition/aws4_request, "
        "Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/rekognition/aws4_request, "
        "SignedHeaders=Host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/rekognition/aws4_request, "
        "SignedHeaders=host, Signature=zz",
        "AWS4-HMAC-SHA256 Credential=a/2026-1-1/us-east-1/rekognition/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 " + "x" * 5000,
    ],
)
def test_malformed_authorization_headers_are_incomplete(value: str) -> None:
    with pytest.raises(AwsError) as exc:
        sigv4.parse_authorization(value)
    assert exc.value.code == "IncompleteSignatureException"
    assert exc.value.status == 400


# ---- the operations Bastion serves ----------------------------------------------------


async def test_detect_moderation_labels_is_served_to_signed_requests_only(
    engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    async with serving(settings, engine) as api:
        assert "DetectModerationLabels" in operations()
        k = await new_aws_key(api, AUTH)
        photo = encode(benign_photos()["skimage-coffee"], "JPEG")
        client = rekognition(api.base, k)
        out = await asyncio.to_thread(client.detect_moderation_labels, Image={"Bytes": photo})
        assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert uuid.UUID(out["ResponseMetadata"]["RequestId"]).version == 4
        assert "ModerationModelVersion" in out and isinstance(out["ModerationLabels"], list)
        wrong = rekognition(api.base, AwsKey(k.id, "A" * 40))
        with pytest.raises(ClientError) as exc:
            await asyncio.to_thread(wrong.detect_moderation_labels, Image={"Bytes": photo})
        assert _code(exc) == "InvalidSignatureException"
        reader = rekognition(api.base, await new_aws_key(api, AUTH, scopes=("read",)))
        with pytest.raises(ClientError) as exc:
            await asyncio.to_thread(reader.detect_moderation_labels, Image={"Bytes": photo})
        assert _code(exc) == "AccessDeniedException"


def test_the_cli_issues_lists_and_revokes_keys(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bastion.cli import app

    runner = CliRunner()
    base = ["--data-dir", str(tmp_path)]
    made = runner.invoke(app, ["aws-keys", "create", "--name", "uploader", *base])
    assert made.exit_code == 0, made.output
    lines = dict(line.split(" = ") for line in made.stdout.strip().splitlines())
    key_id, secret = lines["aws_access_key_id"], lines["aws_secret_access_key"]
    assert KEY_ID_RE.fullmatch(key_id) and len(secret) == 40
    listed = runner.invoke(app, ["aws-keys", "list", *base], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and key_id in listed.stdout and secret not in listed.stdout
    gone = runner.invoke(app, ["aws-keys", "revoke", key_id, "--tenant", "other", *base])
    assert gone.exit_code == 2  # another tenant's key is not found
    assert runner.invoke(app, ["aws-keys", "revoke", key_id, *base]).exit_code == 0
    # the secret printed is the one the server verifies (same data dir, same seed)
    settings = make_settings(tmp_path)
    assert derive_secret(master_secret(settings), key_id, _salt(settings, key_id)) == secret


def _salt(settings: Settings, key_id: str) -> str:
    from bastion.store.db import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT salt FROM aws_access_keys WHERE id = :i"), {"i": key_id}
            ).one()
            return str(row[0])
    finally:
        engine.dispose()
