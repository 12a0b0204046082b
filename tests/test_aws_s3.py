"""``S3Object`` inputs of the Rekognition-compatible endpoint: folder buckets (names that
lead out of the folder, the tenant allow-list, missing objects, sizes) and buckets of a
real S3-compatible store (moto's server on loopback, in a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import boto3
import httpx
import pytest

from bastion.api.services import Services
from bastion.aws.call import AwsCall, AwsError
from bastion.aws.s3 import parse_s3_object, read_s3_image, read_s3_video
from bastion.config import Settings
from bastion.store.repo import Principal
from tests.support.loopback import HOST, free_port
from tests.support.settings import make_settings

TENANT, OTHER = "tenant-a", "tenant-b"
KEY_ID, SECRET = "AKIDBASTIONTEST", "bastion-test-secret"


def _call(settings: Settings, tenant: str = TENANT) -> AwsCall:
    """The call an operation receives; only ``svc.settings`` is read by the S3 reader."""
    svc = cast(Services, SimpleNamespace(settings=settings))
    return AwsCall(Principal(tenant, "key", ("moderate",)), svc, "req-1")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "cat.jpg").write_bytes(b"\xff\xd8cat-bytes")
    (root / "big.bin").write_bytes(b"x" * 5000)
    (tmp_path / "secret.txt").write_bytes(b"outside the bucket")
    (root / "escape.jpg").symlink_to(tmp_path / "secret.txt")
    (root / "inside.jpg").symlink_to(root / "photos" / "cat.jpg")
    return root


@pytest.fixture()
def settings(tmp_path: Path, folder: Path) -> Settings:
    buckets = {
        "media-a": {"kind": "folder", "path": str(folder), "tenants": [TENANT]},
        "shared": {"kind": "folder", "path": str(folder), "tenants": [TENANT, OTHER]},
    }
    return make_settings(tmp_path / "data", aws={"buckets": buckets})


async def _expect(code: str, call: AwsCall, s3: dict[str, Any], max_bytes: int = 1000) -> str:
    with pytest.raises(AwsError) as err:
        await read_s3_image(call, s3, max_bytes=max_bytes)
    assert err.value.code == code, err.value.message
    assert err.value.status == 400
    return err.value.message


async def test_folder_bucket_reads_an_object_by_relative_name(settings: Settings) -> None:
    call = _call(settings)
    data = await read_s3_image(call, {"Bucket": "media-a", "Name": "photos/cat.jpg"}, max_bytes=100)
    assert data == b"\xff\xd8cat-bytes"
    # a symbolic link that stays inside the folder is followed
    linked = await read_s3_image(call, {"Bucket": "media-a", "Name": "inside.jpg"}, max_bytes=100)
    assert linked == data


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../secret.txt", "'..'"),
        ("photos/../../secret.txt", "'..'"),
        ("/etc/passwd", "absolute"),
        ("escape.jpg", "leads out"),
        ("photos\\..\\..\\secret.txt", "backslash"),
        ("photos/cat.jpg\x00.png", "NUL"),
    ],
)
async def test_folder_bucket_refuses_names_leading_out(
    settings: Settings, name: str, says: str
) -> None:
    message = await _expect(
        "InvalidS3ObjectException", _call(settings), {"Bucket": "media-a", "Name": name}
    )
    assert says in message


async def test_folder_bucket_is_read_only_by_the_tenants_it_names(settings: Settings) -> None:
    s3 = {"Bucket": "media-a", "Name": "photos/cat.jpg"}
    refused = await _expect("InvalidS3ObjectException", _call(settings, OTHER), s3)
    # the same answer as for a bucket that is not configured at all
    unknown = await _expect(
        "InvalidS3ObjectException", _call(settings), {"Bucket": "nowhere", "Name": "x"}
    )
    assert refused.replace("media-a", "B") == unknown.replace("nowhere", "B")
    shared = {"Bucket": "shared", "Name": "photos/cat.jpg"}
    assert await read_s3_image(_call(settings, OTHER), shared, max_bytes=100)


async def test_a_bucket_names_its_tenants() -> None:
    from pydantic import ValidationError

    from bastion.aws.config import AwsConfig

    with pytest.raises(ValidationError, match="tenants"):
        AwsConfig.model_validate({"buckets": {"media": {"kind": "folder", "path": "/srv"}}})
    with pytest.raises(ValidationError, match="tenants"):
        AwsConfig.model_validate(
            {"buckets": {"media": {"kind": "folder", "path": "/srv", "tenants": []}}}
        )


async def test_missing_object_too_large_and_bad_shapes(settings: Settings) -> None:
    call = _call(settings)
    missing = await _expect(
        "InvalidS3ObjectException", call, {"Bucket": "media-a", "Name": "no.jpg"}
    )
    assert "does not exist" in missing
    await _expect("InvalidS3ObjectException", call, {"Bucket": "media-a", "Name": "photos"})
    await _expect("ImageTooLargeException", call, {"Bucket": "media-a", "Name": "big.bin"}, 4999)
    assert (
        len(await read_s3_image(call, {"Bucket": "media-a", "Name": "big.bin"}, max_bytes=5000))
        == 5000
    )
    versioned = {"Bucket": "media-a", "Name": "big.bin", "Version": "v1"}
    assert "versions" in await _expect("InvalidS3ObjectException", call, versioned, 9999)
    await _expect("InvalidParameterException", call, {"Bucket": "a/b", "Name": "x"})
    await _expect("InvalidParameterException", call, {"Bucket": "media-a"})
    await _expect(
        "InvalidParameterException", call, {"Bucket": "media-a", "Name": "x", "Etag": "1"}
    )


async def test_video_streams_into_a_sink_within_its_limit(settings: Settings) -> None:
    call = _call(settings)
    chunks: list[bytes] = []
    ref = parse_s3_object({"Bucket": "media-a", "Name": "big.bin"})
    assert await read_s3_video(call, ref, chunks.append, max_bytes=5000) == 5000
    assert b"".join(chunks) == b"x" * 5000
    with pytest.raises(AwsError) as err:
        await read_s3_video(call, ref, chunks.append, max_bytes=10)
    assert err.value.code == "VideoTooLargeException"


# an S3-compatible store ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, in a process of its own."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "moto's server exited"
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.1)
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        s3.create_bucket(Bucket="store-media")
        s3.put_bucket_versioning(
            Bucket="store-media", VersioningConfiguration={"Status": "Enabled"}
        )
        s3.put_object(Bucket="store-media", Key="clips/one.jpg", Body=b"first version")
        s3.put_object(Bucket="store-media", Key="clips/one.jpg", Body=b"second version!")
        s3.put_object(Bucket="store-media", Key="big.bin", Body=b"y" * 4096)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _store_settings(tmp_path: Path, url: str, *, allow_private: bool = True) -> Settings:
    bucket = {
        "kind": "s3",
        "endpoint_url": url,
        "bucket": "store-media",
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET,
        "tenants": [TENANT],
        "connect_timeout_s": 2,
        "read_timeout_s": 5,
    }
    return make_settings(
        tmp_path / "data",
        allow_private_urls=allow_private,
        aws={"buckets": {"media": bucket}},
    )


async def test_store_bucket_reads_objects_and_versions(store: str, tmp_path: Path) -> None:
    import boto3 as b3

    call = _call(_store_settings(tmp_path, store))
    s3 = {"Bucket": "media", "Name": "clips/one.jpg"}
    assert await read_s3_image(call, s3, max_bytes=100) == b"second version!"
    client = b3.client(
        "s3",
        endpoint_url=store,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    versions = client.list_object_versions(Bucket="store-media", Prefix="clips/one.jpg")
    oldest = next(v["VersionId"] for v in versions["Versions"] if not v["IsLatest"])
    assert await read_s3_image(call, {**s3, "Version": oldest}, max_bytes=100) == b"first version"
    missing = await _expect("InvalidS3ObjectException", call, {"Bucket": "media", "Name": "no.jpg"})
    assert "does not exist" in missing
    await _expect("InvalidS3ObjectException", call, {**s3, "Version": "not-a-version"})
    # refused on its declared size, before any byte is downloaded
    await _expect("ImageTooLargeException", call, {"Bucket": "media", "Name": "big.bin"}, 4095)
    assert (
        len(await read_s3_image(call, {"Bucket": "media", "Name": "big.bin"}, max_bytes=4096))
        == 4096
    )
    await _expect("InvalidS3ObjectException", _call(_store_settings(tmp_path, store), OTHER), s3)


async def test_store_endpoint_goes_through_the_address_policy(store: str, tmp_path: Path) -> None:
    call = _call(_store_settings(tmp_path, store, allow_private=False))
    message = await _expect(
        "InvalidS3ObjectException", call, {"Bucket": "media", "Name": "big.bin"}
    )
    assert "refused" in message and "private address" in message


async def test_unreachable_store_is_invalid_s3_object(tmp_path: Path) -> None:
    call = _call(_store_settings(tmp_path, f"http://{HOST}:{free_port()}"))
    message = await _expect("InvalidS3ObjectException", call, {"Bucket": "media", "Name": "x.jpg"})
    assert "cannot be reached" in message
