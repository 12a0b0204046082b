"""The REST API end to end, in process, with the real models."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.media import benign_photos, encode, photo, qr_on_photo
from tests.support.settings import make_settings

pytestmark = pytest.mark.models


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(engine: Engine, data_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_settings(data_root / "api"), engine) as api:
        yield api.client


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["models_loaded"] is True


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer bst_aaaaaaaaaaaa_" + "x" * 40}, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, "missing_api_key"),
    ],
)
async def test_every_v1_call_needs_a_key(
    client: httpx.AsyncClient, headers: dict[str, str], code: str
) -> None:
    r = await client.post("/v1/moderate", content=photo(), headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == code


async def test_multipart_benign_photo_is_allowed_with_full_result(
    client: httpx.AsyncClient,
) -> None:
    data = photo()
    r = await client.post(
        "/v1/moderate", files={"file": ("cat.jpg", data, "image/jpeg")}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "allow" and body["reasons"] == []
    assert body["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(body["hashes"]["pdq"]) == 64
    assert {t["analyzer"] for t in body["timings"]} == {
        "nsfw",
        "labels",
        "ocr",
        "codes",
        "faces",
        "hashes",
        "speech",  # the default policy's analyzers of sound: no window in an image
        "toxicity",  # scores what speech says, not text read in pictures (lines_from)
    }
    assert all(v for v in body["versions"].values())
    assert any("cat" in t["name"] for t in body["tags"][:3]), body["tags"][:3]
    assert body["media"]["format"] == "JPEG" and body["media"]["width"] == 451
    assert "Hate Symbols" in body["undetectable"]
    assert all(
        item["frame"] is None for key in ("labels", "tags", "text", "faces") for item in body[key]
    )  # frame indices only for animations
    for lab in body["labels"]:
        assert lab["model"] and lab["version"] and 0 <= lab["confidence"] <= 100


async def test_raw_body_and_base64_and_json_errors(client: httpx.AsyncClient) -> None:
    data = photo("skimage-rocket", "PNG")
    r1 = await client.post(
        "/v1/moderate", content=data, headers={**AUTH, "Content-Type": "image/png"}
    )
    r2 = await client.post(
        "/v1/moderate", json={"base64": base64.b64encode(data).decode()}, headers=AUTH
    )
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["hashes"]["sha256"] == r2.json()["hashes"]["sha256"]
    r3 = await client.post("/v1/moderate", json={"nope": 1}, headers=AUTH)
    assert r3.status_code == 400 and r3.json()["error"]["code"] == "invalid_request"
    r4 = await client.post(
        "/v1/moderate", content=b"{bad json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r4.status_code == 400 and r4.json()["error"]["code"] == "invalid_json"


async def test_url_input_to_loopback_is_refused_by_default(client: httpx.AsyncClient) -> None:
    for url in (
        "http://127.0.0.1:8000/x.jpg",
        "http://localhost/x.png",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
    ):
        r = await client.post("/v1/moderate", json={"url": url}, headers=AUTH)
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error"]["code"] == "url_rejected"


@pytest.mark.parametrize(
    ("data", "ctype", "status", "code"),
    [
        (b"", "image/jpeg", 400, "empty_input"),
        (
            b"hello, this is plain text and not an image at all",
            "application/octet-stream",
            415,
            "unsupported_media_type",
        ),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "image/jpeg", 415, "unsupported_media_type"),
        (None, "image/jpeg", 422, "corrupt_media"),
    ],
)
async def test_bad_input_gets_a_stable_4xx(
    client: httpx.AsyncClient, data: bytes | None, ctype: str, status: int, code: str
) -> None:
    if data is None:
        full = photo()
        data = full[: len(full) // 3]
    r = await client.post("/v1/moderate", content=data, headers={**AUTH, "Content-Type": ctype})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert (await client.get("/healthz")).status_code == 200


async def test_bombs_and_oversized_bodies_are_refused_without_harm(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    # a 30000×30000 PNG of a few hundred KB: refused from the header, pixels never allocated
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    side = 30000
    comp = zlib.compressobj(9)
    row = b"\0" + b"\0" * (side // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    assert len(bomb) < 2_000_000
    r = await client.post(
        "/v1/moderate", content=bomb, headers={**AUTH, "Content-Type": "image/png"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
    big = b"\xff\xd8\xff" + b"\0" * (engine.settings.limits.max_bytes + 10)
    r = await client.post(
        "/v1/moderate", content=big, headers={**AUTH, "Content-Type": "image/jpeg"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "media_too_large"
    r = await client.post(
        "/v1/moderate", files={"file": ("x.jpg", big, "image/jpeg")}, headers=AUTH
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "media_too_large"
    assert (await client.post("/v1/moderate", content=photo(), headers=AUTH)).status_code == 200


async def test_form_urlencoded_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/moderate", data={"a": "b"}, headers=AUTH)
    assert r.status_code == 415


async def test_unknown_policy_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/moderate?policy=nope", content=photo(), headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "policy_not_found"


async def test_qr_code_to_blocked_domain_is_blocked_by_tenant_list(
    client: httpx.AsyncClient,
) -> None:
    r = await client.put("/v1/lists", json={"blocked_domains": ["spam-shop.example"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    try:
        img = qr_on_photo("https://www.spam-shop.example/deal?id=7")
        r = await client.post(
            "/v1/moderate", content=img, headers={**AUTH, "Content-Type": "image/png"}
        )
        body = r.json()
        assert r.status_code == 200, r.text
        assert body["decision"] == "block", body["reasons"]
        assert body["codes"][0]["format"].lower().startswith("qr")
        assert any("spam-shop.example" in u for u in body["urls"])
        assert body["reasons"][0]["label"] == "Blocked Domain"
        clean = qr_on_photo("https://www.example.org/")
        r = await client.post(
            "/v1/moderate", content=clean, headers={**AUTH, "Content-Type": "image/png"}
        )
        assert r.json()["decision"] == "allow"
    finally:
        await client.put("/v1/lists", json={}, headers=AUTH)


async def test_identical_bytes_are_analysed_once(client: httpx.AsyncClient) -> None:
    data = photo("sklearn-flower")
    first = (await client.post("/v1/moderate", content=data, headers=AUTH)).json()
    second = (await client.post("/v1/moderate", content=data, headers=AUTH)).json()
    assert second["cached"] is True
    assert first["labels"] == second["labels"]


async def test_concurrent_requests_are_batched(client: httpx.AsyncClient) -> None:
    photos = benign_photos()
    datas = [encode(img, "JPEG", quality=80 + i) for i, img in enumerate(photos.values())]
    datas = (datas * 3)[:16]
    datas = [d + bytes([i]) for i, d in enumerate(datas)]  # distinct bytes: no cache hits
    rs = await asyncio.gather(
        *(client.post("/v1/moderate", content=d, headers=AUTH) for d in datas)
    )
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    assert all(r.json()["cached"] is False for r in rs)
    metrics = (await client.get("/metrics")).text
    assert "bastion_batch_size_bucket" in metrics
    # at least one model call took more than one frame
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith('bastion_batch_size_bucket{le="1.0",model="nsfw"}')
    )
    count = next(
        ln for ln in metrics.splitlines() if ln.startswith('bastion_batch_size_count{model="nsfw"}')
    )
    assert float(line.split()[-1]) < float(count.split()[-1])


async def test_batch_endpoint_reports_per_item(client: httpx.AsyncClient) -> None:
    good = base64.b64encode(photo("skimage-astronaut")).decode()
    r = await client.post(
        "/v1/moderate/batch",
        headers=AUTH,
        json={
            "items": [
                {"base64": good, "id": "a"},
                {"base64": base64.b64encode(b"junk").decode(), "id": "b"},
                {"url": "http://10.0.0.1/x.jpg", "id": "c"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    items = r.json()["results"]
    assert items[0]["result"]["decision"] == "allow" and items[0]["id"] == "a"
    assert items[1]["error"]["code"] == "unsupported_media_type"
    assert items[2]["error"]["code"] == "url_rejected"


async def test_keys_scopes_and_revocation(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/keys", json={"name": "reader", "scopes": ["read"]}, headers=AUTH)
    assert r.status_code == 201, r.text
    key, key_id = r.json()["key"], r.json()["id"]
    reader = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/analyzers", headers=reader)).status_code == 200
    r = await client.post("/v1/moderate", content=photo(), headers=reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    assert (await client.get("/v1/keys", headers=reader)).status_code == 403
    assert (await client.delete(f"/v1/keys/{key_id}", headers=AUTH)).status_code == 200
    assert (await client.get("/v1/analyzers", headers=reader)).status_code == 401


async def test_tenants_are_isolated(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tenants", json={"id": "acme", "name": "Acme"}, headers=AUTH)
    assert r.status_code == 201, r.text
    acme = {"Authorization": f"Bearer {r.json()['admin_key']['key']}"}
    policy = "name: strict\nanalyzers: [labels]\nrules:\n  - categories: ['*']\n    block: 1\n"
    r = await client.put(
        "/v1/policies/strict", content=policy, headers={**acme, "Content-Type": "application/yaml"}
    )
    assert r.status_code == 200, r.text
    r = await client.post("/v1/moderate?policy=strict", content=photo(), headers=acme)
    assert r.status_code == 200 and r.json()["policy"] == "strict"
    assert [t["analyzer"] for t in r.json()["timings"]] == ["labels"]
    # the default tenant does not see acme's policy
    r = await client.post("/v1/moderate?policy=strict", content=photo(), headers=AUTH)
    assert r.status_code == 404
    # a tenant admin cannot create tenants or read other tenants' keys
    r = await client.post("/v1/tenants", json={"id": "evil", "name": "x"}, headers=acme)
    assert r.status_code == 403
    keys = (await client.get("/v1/keys", headers=acme)).json()
    assert {k["tenant_id"] for k in keys} == {"acme"}


async def test_policy_upload_errors_carry_line_numbers(client: httpx.AsyncClient) -> None:
    bad = "name: p\nanalyzers: [nsfw]\nrules:\n  - categories: [Weapons]\n    review: 300\n"
    r = await client.put(
        "/v1/policies/p", content=bad, headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_policy" and err["details"]["errors"][0]["line"] == 5


async def test_analyzers_endpoint_lists_versions_and_undetectable(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/v1/analyzers", headers=AUTH)).json()
    names = {a["name"] for a in body["analyzers"]}
    assert {"nsfw", "labels", "ocr", "codes", "faces", "hashes", "speech", "toxicity"} <= names
    assert "Hate Symbols" in body["undetectable"] and "Rude Gestures" in body["undetectable"]
    assert "Explicit Nudity" not in body["undetectable"]
    assert all(a["version"] for a in body["analyzers"])


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/moderate" in spec["paths"] and "/v1/moderate/batch" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_animated_gif_frames_are_sampled(client: httpx.AsyncClient) -> None:
    photos = list(benign_photos().values())
    frames = [Image.fromarray(p).resize((320, 240)) for p in photos[:6]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r = await client.post("/v1/moderate", content=buf.getvalue(), headers=AUTH)
    assert r.status_code == 200, r.text
    media = r.json()["media"]
    assert media["frames"] == 6 and media["frames_analyzed"] >= 2
    tags = r.json()["tags"]
    assert tags and all(isinstance(t["frame"], int) for t in tags)


async def test_admission_and_request_size_limits(engine: Engine, data_root: Path) -> None:
    settings = make_settings(
        data_root / "limits", max_queued=2, max_inflight=1, max_request_bytes=200_000
    )
    async with running(settings, engine) as api:
        c = api.client
        big = b"\0" * 300_000
        r = await c.post(
            "/v1/moderate", content=big, headers={**AUTH, "Content-Type": "image/jpeg"}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = await c.post(
            "/v1/moderate/batch", headers=AUTH, json={"items": [{"base64": "A" * 300_000}]}
        )
        assert r.status_code == 413

        datas = [
            encode(img, "JPEG", quality=70 + i) for i, img in enumerate(benign_photos().values())
        ]
        rs = await asyncio.gather(
            *(
                c.post("/v1/moderate", content=d, headers={**AUTH, "Content-Type": "image/jpeg"})
                for d in datas
            )
        )
        codes = sorted(r.status_code for r in rs)
        assert codes.count(200) >= 2 and set(codes) <= {200, 503}, codes
        assert 503 in codes
        refused = next(r for r in rs if r.status_code == 503)
        assert refused.json()["error"]["code"] == "overloaded"
