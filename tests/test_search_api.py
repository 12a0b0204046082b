"""The search API against the real indexer: real photos (a sign, a QR code, look-alike
photos) analysed by the real ``labels``, ``ocr`` and ``codes`` analyzers and indexed with
their embeddings, transcripts in two languages, then ``GET /v1/search`` (a word on a
sign, a spoken phrase with its time range and highlights, a query in another language
found by meaning, every filter, paging by cursor, bad parameters) and find-similar by
media ref and by upload; another tenant sees none of it; search switched off or without
image embeddings answers 503."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bastion.jobs.thumbnails import ThumbnailStore
from bastion.pipeline.engine import Engine
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import parse_policy
from bastion.policy.model import Policy
from bastion.samples.embedding import Embedder
from bastion.search.indexer import SearchIndexer, TranscriptSegment
from tests.support import media
from tests.support.app import Api, Tenant, running
from tests.support.jobs import CODES_POLICY
from tests.support.settings import make_settings
from tests.support.video import qr_video

pytestmark = pytest.mark.models

SIGN = "GRAND OPENING BAKERY"
QR = "https://example.org/menu"
PHOTOS = ("skimage-astronaut", "skimage-rocket", "sklearn-china")
OLD = datetime(2026, 1, 1, tzinfo=UTC)
"""When the QR image was indexed (the rest: now), for the time filters."""
HOSTILE = "<script>alert(1)</script> said the parcel robot"
PAGED = 7
MAX_BYTES = 4 * 1024 * 1024


def job_ref() -> str:
    return f"job_{uuid.uuid4().hex}"


@dataclass
class World:
    """One app with tenant ``a``'s media indexed, and tenant ``b`` with none."""

    api: Api
    a: Tenant
    a_reader: dict[str, str]
    b: Tenant
    refs: dict[str, str]
    """Name (``sign``, ``qr``, a photo's name, ``rocket-copy``) → media ref."""


def index_of(api: Api) -> SearchIndexer:
    index = api.services.search
    assert index is not None
    return index


async def index_media(api: Api, tenant: str) -> dict[str, str]:
    """Tenant's images (analysed for real, with embeddings) and transcripts, indexed."""
    svc = api.services
    index = index_of(api)
    policy = Policy(name="search", analyzers=["labels", "ocr", "codes"])
    embedder = Embedder(svc.engine, "labels")
    images = {
        "sign": media.text_on_photo(SIGN),
        "qr": media.qr_on_photo(QR),
        **{name: media.jpeg(name) for name in PHOTOS},
        "rocket-copy": media.jpeg("skimage-rocket", quality=55, scale=0.6),
    }
    refs = {name: job_ref() for name in images}
    for name, data in images.items():
        result = await svc.moderation.moderate_bytes(data, policy, tenant=tenant)
        vector = await embedder.embed(await embedder.decode(data))
        when = OLD if name == "qr" else None
        await asyncio.to_thread(index.index_image, tenant, refs[name], result, vector, when)
    transcripts: dict[str, list[TranscriptSegment]] = {
        "aud-en": [
            TranscriptSegment(
                0.0,
                4.0,
                "The delivery driver left the parcel beside the garage door",
                "en",
                decision="allow",
            ),
            TranscriptSegment(
                5.0, 9.5, "Please remember to water the plants on Sunday", "en", decision="allow"
            ),
        ],
        "aud-es": [
            TranscriptSegment(
                62.0, 66.5, "El repartidor dejó el paquete junto a la puerta del garaje", "es"
            )
        ],
        "aud-bad": [
            TranscriptSegment(1.0, 2.0, HOSTILE, "en", labels=("Blocked Word",), decision="block")
        ],
        **{
            f"aud-p{n}": [TranscriptSegment(n, n + 1.0, f"the lighthouse keeper number {n}", "en")]
            for n in range(PAGED)
        },
    }
    for ref, segments in transcripts.items():
        await asyncio.to_thread(index.index_transcript, tenant, ref, segments)
        refs[ref] = ref
    return refs


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = make_settings(
        tmp_path_factory.mktemp("search-api"),
        jobs={"run_worker": False},
        live={"run_sessions": False},
        limits={"max_bytes": MAX_BYTES},
    )
    async with running(settings, engine) as api:
        a, b = await api.new_tenant(), await api.new_tenant()
        refs = await index_media(api, a.id)
        yield World(api, a, await api.reader(a.headers), b, refs)


async def search(w: World, headers: dict[str, str] | None = None, **params: Any) -> Any:
    r = await w.api.client.get("/v1/search", params=params, headers=headers or w.a_reader)
    assert r.status_code == 200, r.text
    return r.json()


def refs_of(body: Any) -> list[str]:
    return [m["media_ref"] for m in body["moments"]]


def marked(snippet: Any) -> set[str]:
    """The highlighted words of a snippet, by its ranges."""
    text = snippet["text"]
    return {text[s:e].lower() for s, e in snippet["highlights"]}


async def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    code: str = r.json()["error"]["code"]
    return code


async def test_a_word_on_a_sign_is_found_at_its_media(world: World) -> None:
    body = await search(world, q="bakery")
    top = body["moments"][0]
    sign = world.refs["sign"]
    assert top["media_ref"] == sign and top["media_kind"] == "image"
    assert top["media_url"] == f"/v1/jobs/{sign}"
    assert top["start_s"] is None and top["end_s"] is None
    assert top["matches"][0]["field"] == "ocr"
    assert marked(top["snippet"]) == {"bakery"}
    parts = top["snippet"]["parts"]
    assert "".join(p["text"] for p in parts) == top["snippet"]["text"]
    assert [p["text"].lower() for p in parts if p["highlight"]] == ["bakery"]
    assert {"score", "decision", "labels", "thumbnail"} <= set(top)


async def test_a_spoken_phrase_has_its_time_range_and_highlights(world: World) -> None:
    body = await search(world, q="parcel garage", field="transcript")
    top = body["moments"][0]
    assert (top["media_ref"], top["media_kind"]) == ("aud-en", "audio")
    assert (top["start_s"], top["end_s"]) == (0.0, 4.0)
    assert top["media_url"] is None  # not a job or a stream
    assert marked(top["snippet"]) == {"parcel", "garage"}
    assert top["matches"][0]["language"] == "en"


async def test_a_query_in_another_language_finds_by_meaning(world: World) -> None:
    plants = (await search(world, q="riega las plantas el domingo"))["moments"][0]
    assert (plants["media_ref"], plants["start_s"]) == ("aud-en", 5.0)
    parcel = await search(world, q="荷物を車庫の扉のそばに置いた", field="transcript")
    found = {(m["media_ref"], m["start_s"]) for m in parcel["moments"][:3]}
    assert ("aud-en", 0.0) in found and ("aud-es", 62.0) in found, found


async def test_filters_narrow_what_is_found(world: World) -> None:
    sign = world.refs["sign"]
    assert sign in refs_of(await search(world, q="bakery", kind="image"))
    assert sign not in refs_of(await search(world, q="bakery", kind="audio,video"))
    assert "aud-bad" not in refs_of(await search(world, q="parcel", kind="image"))

    blocked = refs_of(await search(world, q="parcel", decision="block"))
    assert blocked == ["aud-bad"]
    allowed = refs_of(await search(world, q="parcel", decision="allow", field="transcript"))
    assert "aud-en" in allowed and "aud-bad" not in allowed
    assert refs_of(await search(world, q="parcel", label="Blocked Word")) == ["aud-bad"]
    spanish = refs_of(await search(world, q="paquete", language="es"))
    assert spanish == ["aud-es"]
    assert "aud-es" not in refs_of(await search(world, q="paquete", language="en"))
    only = refs_of(await search(world, q="lighthouse keeper", media="aud-p1,aud-p2"))
    assert sorted(only) == ["aud-p1", "aud-p2"]

    qr = world.refs["qr"]
    assert refs_of(await search(world, q="example menu", field="code")) == [qr]
    june = "2026-06-01T00:00:00Z"
    assert qr not in refs_of(await search(world, q="example menu", since=june))
    assert refs_of(await search(world, q="example menu", field="code", until=june)) == [qr]
    naive = "2026-06-01T00:00:00"  # no zone: UTC
    assert refs_of(await search(world, q="example menu", field="code", until=naive)) == [qr]


async def test_paging_gives_disjoint_pages_and_refuses_a_garbled_cursor(world: World) -> None:
    seen: list[tuple[str, float | None]] = []
    params: dict[str, Any] = {"q": "lighthouse keeper", "field": "transcript", "limit": 3}
    pages = 0
    while True:
        body = await search(world, **params)
        pages += 1
        assert len(body["moments"]) <= 3
        seen += [(m["media_ref"], m["start_s"]) for m in body["moments"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == len(set(seen)) == PAGED and pages == 3
    assert {ref for ref, _ in seen} == {f"aud-p{n}" for n in range(PAGED)}

    c = world.api.client
    get = c.get
    h = world.a_reader
    for cursor in ("!!", "bm90IGEgY3Vyc29y", params["cursor"][:-2] + "xx"):
        r = await get("/v1/search", params={"q": "lighthouse", "cursor": cursor}, headers=h)
        assert await error_of(r, 400) == "invalid_cursor", cursor
    # a cursor of another query or other filters
    r = await get("/v1/search", params={**params, "q": "keeper"}, headers=h)
    assert await error_of(r, 400) == "invalid_cursor"
    r = await get("/v1/search", params={**params, "field": "ocr"}, headers=h)
    assert await error_of(r, 400) == "invalid_cursor"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 422, "invalid_request"),
        ({"q": ""}, 422, "invalid_request"),
        ({"q": "x" * 1001}, 422, "invalid_request"),
        ({"q": "?! -- ()"}, 400, "invalid_search_query"),
        ({"q": " ".join(f"w{n}" for n in range(40))}, 400, "invalid_search_query"),
        ({"q": "a", "limit": 0}, 422, "invalid_request"),
        ({"q": "a", "limit": 101}, 422, "invalid_request"),
        ({"q": "a", "kind": "pdf"}, 422, "invalid_request"),
        ({"q": "a", "field": "body"}, 422, "invalid_request"),
        ({"q": "a", "decision": "maybe"}, 422, "invalid_request"),
        ({"q": "a", "since": "yesterday"}, 422, "invalid_request"),
        ({"q": "a", "since": "1733000000"}, 422, "invalid_request"),
        ({"q": "a", "since": "2026-06-02", "until": "2026-06-01"}, 400, "invalid_time_range"),
        ({"q": "a", "media": ",".join(f"m{n}" for n in range(101))}, 422, "invalid_request"),
    ],
)
async def test_bad_parameters_get_stable_codes(
    world: World, params: dict[str, Any], status: int, code: str
) -> None:
    r = await world.api.client.get("/v1/search", params=params, headers=world.a_reader)
    assert await error_of(r, status) == code


async def test_similar_by_media_ref_and_by_upload(world: World) -> None:
    c, h = world.api.client, world.a_reader
    rocket, copy = world.refs["skimage-rocket"], world.refs["rocket-copy"]
    r = await c.get("/v1/search/similar", params={"media": rocket, "k": 3}, headers=h)
    assert r.status_code == 200, r.text
    moments = r.json()["moments"]
    assert moments[0]["media_ref"] == copy and rocket not in refs_of(r.json())
    assert len(moments) == 3 and moments[0]["score"] > 0.8
    assert moments[0]["score"] > moments[1]["score"] + 0.1
    assert moments[0]["media_url"] == f"/v1/jobs/{copy}"

    upload = media.jpeg("skimage-rocket", quality=70, scale=0.8)
    raw = await c.post(
        "/v1/search/similar",
        params={"k": 2},
        content=upload,
        headers={**h, "Content-Type": "image/jpeg"},
    )
    assert raw.status_code == 200, raw.text
    assert set(refs_of(raw.json())) == {rocket, copy}
    form = await c.post(
        "/v1/search/similar",
        params={"kind": "image"},
        files={"file": ("x.png", media.photo("sklearn-china", "PNG"), "image/png")},
        headers=h,
    )
    assert form.status_code == 200, form.text
    assert refs_of(form.json())[0] == world.refs["sklearn-china"]
    # filters hold for similar media too
    only = await c.get(
        "/v1/search/similar",
        params={"media": rocket, "since": "2025-01-01T00:00:00Z", "until": "2026-06-01"},
        headers=h,
    )
    assert refs_of(only.json()) == [world.refs["qr"]]

    not_image = await c.post(
        "/v1/search/similar", content=b"not an image", headers={**h, "Content-Type": "image/png"}
    )
    assert await error_of(not_image, 415) == "unsupported_media_type"
    huge = await c.post(
        "/v1/search/similar",
        content=b"\0" * (MAX_BYTES + 1),
        headers={**h, "Content-Type": "image/png"},
    )
    assert await error_of(huge, 413) == "media_too_large"
    unknown = await c.post("/v1/search/similar", params={"q": "x"}, content=upload, headers=h)
    assert await error_of(unknown, 422) == "unknown_field"
    missing = await c.get("/v1/search/similar", params={"media": "job_nope"}, headers=h)
    assert await error_of(missing, 404) == "media_not_indexed"


async def test_another_tenant_sees_nothing_of_the_first(world: World) -> None:
    c = world.api.client
    b = await world.api.reader(world.b.headers)
    for q in ("bakery", "parcel garage", "riega las plantas el domingo", "lighthouse"):
        assert (await search(world, b, q=q))["moments"] == [], q
    # naming the first tenant's media changes nothing
    sign = world.refs["sign"]
    assert (await search(world, b, q="bakery", media=sign))["moments"] == []
    for name in ("sign", "skimage-rocket"):
        r = await c.get("/v1/search/similar", params={"media": world.refs[name]}, headers=b)
        assert await error_of(r, 404) == "media_not_indexed"
    r = await c.post(
        "/v1/search/similar",
        content=media.jpeg("skimage-rocket"),
        headers={**b, "Content-Type": "image/jpeg"},
    )
    assert r.status_code == 200 and r.json()["moments"] == [], r.text
    # and the first still finds its own
    assert refs_of(await search(world, q="bakery"))[0] == sign


async def test_a_video_moment_has_its_time_range_and_thumbnail(
    world: World, tmp_path: Path
) -> None:
    """A real video through the real pipeline: the QR code it shows from 2 s to 4 s."""
    api = world.api
    tenant = await api.new_tenant()
    reader = await api.reader(tenant.headers)
    ref = job_ref()
    frames = tmp_path / "frames"
    result = await moderate_video(
        api.services.moderation,
        qr_video(tmp_path / "qr.mp4", seconds=6, qr_from=2, qr_to=4),
        parse_policy(CODES_POLICY),
        thumbnails_dir=frames,
    )
    shown = [
        f.model_copy(update={"thumbnail": ThumbnailStore.url(ref, f.thumbnail)})
        if f.thumbnail
        else f
        for f in result.frames
    ]
    assert any(f.thumbnail for f in shown), "the pipeline wrote no thumbnail"
    result = result.model_copy(update={"frames": shown})
    await asyncio.to_thread(index_of(api).index_video, tenant.id, ref, result)
    body = await search(world, reader, q="evil example promo", field="code")
    (moment,) = body["moments"]
    assert (moment["media_ref"], moment["media_kind"]) == (ref, "video")
    assert moment["media_url"] == f"/v1/jobs/{ref}"
    assert 1.5 <= moment["start_s"] <= 2.5 and 3.0 <= moment["end_s"] <= 4.5, moment
    assert moment["thumbnail"].startswith(f"/v1/jobs/{ref}/thumbnails/")
    assert marked(moment["snippet"]) == {"evil", "example", "promo"}
    assert moment["decision"] == "block" and "Blocked Domain" in moment["labels"]


async def test_a_key_is_needed(world: World) -> None:
    r = await world.api.client.get("/v1/search", params={"q": "bakery"})
    assert await error_of(r, 401) == "missing_api_key"


async def test_search_switched_off_or_without_image_embeddings_is_503(
    engine: Engine, tmp_path: Path
) -> None:
    off = make_settings(tmp_path / "off", search={"enabled": False})
    async with running(off, engine) as api:
        h = await api.reader(await api.tenant())
        r = await api.client.get("/v1/search", params={"q": "bakery"}, headers=h)
        assert await error_of(r, 503) == "search_disabled"
        r = await api.client.get("/v1/search/similar", params={"media": "job_x"}, headers=h)
        assert await error_of(r, 503) == "search_disabled"
        r = await api.client.post(
            "/v1/search/similar",
            content=media.jpeg("skimage-rocket"),
            headers={**h, "Content-Type": "image/jpeg"},
        )
        assert await error_of(r, 503) == "search_disabled"
    text_only = make_settings(tmp_path / "text", search={"image_embeddings": False})
    async with running(text_only, engine) as api:
        h = await api.reader(await api.tenant())
        r = await api.client.post(
            "/v1/search/similar",
            content=media.jpeg("skimage-rocket"),
            headers={**h, "Content-Type": "image/jpeg"},
        )
        assert await error_of(r, 503) == "similar_search_unavailable"
        r = await api.client.get("/v1/search/similar", params={"media": "job_x"}, headers=h)
        assert await error_of(r, 503) == "similar_search_unavailable"
        r = await api.client.get("/v1/search", params={"q": "bakery"}, headers=h)
        assert r.status_code == 200 and r.json()["moments"] == []
