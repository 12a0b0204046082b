"""``S3Object`` inputs: ``{"Bucket", "Name", "Version"?}`` read from the buckets of settings
``aws.buckets``, each a local folder or a bucket of an S3-compatible store, and readable
only by the tenants it names.

A folder bucket's object name is a relative path under the folder: absolute paths, ``..``
segments and symbolic links leading out of the folder are refused. An ``s3`` bucket is
read with botocore's S3 client in a worker thread; its endpoint goes through the same
address policy as every outbound connection of Bastion
(:func:`bastion.media.fetch.check_url`), and a plain ``http`` endpoint is connected to
at the very address that was checked (a DNS answer changing in between cannot redirect
it); the object's size is checked before it is downloaded (``HEAD``, ``ContentLength``),
the download asks for no more than the limit (``Range``) and stops as soon as more
arrives; connecting, each read and the whole copy have timeouts.

Whatever goes wrong is ``InvalidS3ObjectException`` with a message saying what (unknown
bucket, not shared with the tenant, missing object, refused name, unreachable store),
except an object over the size limit: ``ImageTooLargeException`` for an image,
``VideoTooLargeException`` for a video, as Rekognition answers.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import httpx

from bastion.aws.call import AwsCall, AwsError
from bastion.aws.config import BucketConfig, FolderBucket, S3StoreBucket
from bastion.errors import BastionError
from bastion.media.fetch import FetchPolicy, check_url

_CHUNK = 1024 * 1024
_BUCKET_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_")

Sink = Callable[[bytes], None]
"""Where the object's bytes go, chunk by chunk (called in a worker thread)."""


@dataclass(frozen=True, slots=True)
class S3Ref:
    """A validated ``S3Object``: the bucket as the client named it, the object, its version."""

    bucket: str
    name: str
    version: str | None

    def as_shape(self) -> dict[str, str]:
        """The ``S3Object`` shape of the service model."""
        out = {"Bucket": self.bucket, "Name": self.name}
        if self.version is not None:
            out["Version"] = self.version
        return out


def invalid_object(message: str) -> AwsError:
    """``InvalidS3ObjectException`` (HTTP 400, as Rekognition answers)."""
    return AwsError("InvalidS3ObjectException", message)


def _invalid_parameter(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def parse_s3_object(value: Any, *, where: str = "S3Object") -> S3Ref:
    """The ``S3Object`` shape checked as the service model says (InvalidParameterException)."""
    if not isinstance(value, Mapping):
        raise _invalid_parameter(f"{where} must be an object with Bucket and Name")
    unknown = sorted(set(value) - {"Bucket", "Name", "Version"})
    if unknown:
        raise _invalid_parameter(f"{where} has unknown fields: {', '.join(unknown)}")
    bucket, name, version = value.get("Bucket"), value.get("Name"), value.get("Version")
    if not isinstance(bucket, str) or not 3 <= len(bucket) <= 255 or set(bucket) - _BUCKET_CHARS:
        raise _invalid_parameter(
            f"{where}.Bucket must be 3 to 255 characters of letters, digits, '.', '-' and '_'"
        )
    if not isinstance(name, str) or not 1 <= len(name) <= 1024:
        raise _invalid_parameter(f"{where}.Name must be a string of 1 to 1024 characters")
    if version is not None and (not isinstance(version, str) or not 1 <= len(version) <= 1024):
        raise _invalid_parameter(f"{where}.Version must be a string of 1 to 1024 characters")
    return S3Ref(bucket, name, version)


def _bucket(call: AwsCall, ref: S3Ref) -> BucketConfig:
    """The bucket's settings, when it is configured and shared with the caller's tenant."""
    config = call.svc.settings.aws.buckets.get(ref.bucket)
    if config is None or call.principal.tenant_id not in config.tenants:
        # one answer for both: a tenant learns nothing of buckets it may not read
        raise invalid_object(
            f"bucket {ref.bucket!r} cannot be read: it is not configured, or not shared with "
            "this tenant (settings aws.buckets)"
        )
    return config


# folder buckets ---------------------------------------------------------------------------


def _folder_path(config: FolderBucket, ref: S3Ref) -> Path:
    """The file an object name means, refusing names that would lead out of the folder."""
    name = ref.name
    if "\x00" in name or "\\" in name:
        raise invalid_object(f"object name {name!r} contains a NUL or a backslash")
    pure = PurePosixPath(name)
    if pure.is_absolute():
        raise invalid_object(f"object name {name!r} is an absolute path")
    if any(part == ".." for part in pure.parts):
        raise invalid_object(f"object name {name!r} contains '..'")
    root = config.path.resolve()
    try:
        target = (root / pure).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise invalid_object(f"object {name!r} does not exist in bucket {ref.bucket!r}") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "a symlink loop"
        raise invalid_object(f"object {name!r} cannot be read: {why}") from None
    if not target.is_relative_to(root):
        raise invalid_object(f"object {name!r} leads out of bucket {ref.bucket!r}")
    return target


def _copy_folder(
    config: FolderBucket, ref: S3Ref, sink: Sink, max_bytes: int, too_large: AwsError
) -> int:
    if ref.version is not None:
        raise invalid_object(f"bucket {ref.bucket!r} is a folder: it keeps no object versions")
    path = _folder_path(config, ref)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise invalid_object(f"object {ref.name!r} cannot be read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise invalid_object(f"object {ref.name!r} is not a file")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > max_bytes:
            raise too_large
        size = 0
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:  # grew while being read
                raise too_large
            sink(chunk)
    return size


# S3-compatible stores ---------------------------------------------------------------------


def _pinned_endpoint(config: S3StoreBucket, policy: FetchPolicy) -> str:
    """The endpoint after the address policy: for plain http, the checked address itself."""
    try:
        checked = check_url(config.endpoint_url, policy)
    except BastionError as exc:
        raise invalid_object(f"the store of this bucket is refused: {exc.message}") from None
    if checked.scheme != "http":
        return config.endpoint_url  # https: the certificate is verified for the host name
    url = httpx.URL(config.endpoint_url)
    return str(url.copy_with(host=checked.addresses[0], port=checked.port))


def _s3_client(config: S3StoreBucket, endpoint: str) -> Any:
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    return session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.region,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key.get_secret_value(),
        config=Config(
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
            proxies={},
        ),
    )


def _client_error(exc: Exception, ref: S3Ref) -> AwsError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in {"404", "NoSuchKey", "NoSuchVersion", "NotFound"} or status == 404:
            return invalid_object(f"object {ref.name!r} does not exist in bucket {ref.bucket!r}")
        if code in {"403", "AccessDenied", "Forbidden"} or status == 403:
            return invalid_object(f"the store refused to let Bastion read bucket {ref.bucket!r}")
        return invalid_object(f"the store answered {code or status} for {ref.name!r}")
    return invalid_object(f"the store of bucket {ref.bucket!r} cannot be reached: {exc}")


def _copy_store(
    config: S3StoreBucket,
    ref: S3Ref,
    sink: Sink,
    max_bytes: int,
    too_large: AwsError,
    policy: FetchPolicy,
) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + config.total_timeout_s
    client = _s3_client(config, _pinned_endpoint(config, policy))
    where: dict[str, str] = {"Bucket": config.bucket or ref.bucket, "Key": ref.name}
    if ref.version is not None:
        where["VersionId"] = ref.version
    try:
        head = client.head_object(**where)
        if int(head.get("ContentLength", 0)) > max_bytes:
            raise too_large
        got = client.get_object(**where, Range=f"bytes=0-{max_bytes}")
        body = got["Body"]
        size = 0
        try:
            for chunk in body.iter_chunks(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
                if time.monotonic() > deadline:
                    raise invalid_object(
                        f"reading {ref.name!r} took more than {config.total_timeout_s:g} s"
                    )
                sink(chunk)
        finally:
            body.close()
    except (BotoCoreError, ClientError) as exc:
        raise _client_error(exc, ref) from None
    finally:
        client.close()
    return size


# reading ----------------------------------------------------------------------------------


async def copy_s3_object(
    call: AwsCall, ref: S3Ref, sink: Sink, *, max_bytes: int, too_large: AwsError
) -> int:
    """Copy the object into ``sink`` in a worker thread; its size. ``too_large`` is raised
    for an object over ``max_bytes``, InvalidS3ObjectException for anything else."""
    config = _bucket(call, ref)
    if isinstance(config, FolderBucket):
        return await anyio.to_thread.run_sync(_copy_folder, config, ref, sink, max_bytes, too_large)
    policy = call.svc.settings.fetch_policy()
    return await anyio.to_thread.run_sync(
        _copy_store, config, ref, sink, max_bytes, too_large, policy
    )


async def read_s3_image(call: AwsCall, s3_object: Mapping[str, Any], *, max_bytes: int) -> bytes:
    """An image's bytes (``Image.S3Object``); ImageTooLargeException over ``max_bytes``."""
    ref = parse_s3_object(s3_object, where="Image.S3Object")
    data = bytearray()
    too_large = AwsError(
        "ImageTooLargeException",
        f"the image {ref.name!r} is larger than the limit of {max_bytes} bytes",
    )
    await copy_s3_object(call, ref, data.extend, max_bytes=max_bytes, too_large=too_large)
    return bytes(data)


async def read_s3_video(call: AwsCall, ref: S3Ref, sink: Sink, *, max_bytes: int) -> int:
    """Stream a video (``Video.S3Object``) into ``sink`` (a job's media writer); its size.
    VideoTooLargeException over ``max_bytes``."""
    too_large = AwsError(
        "VideoTooLargeException",
        f"the video {ref.name!r} is larger than the limit of {max_bytes} bytes",
    )
    return await copy_s3_object(call, ref, sink, max_bytes=max_bytes, too_large=too_large)
