"""The portal's search page over HTTP: a viewer searches the tenant's media indexed by the
real indexer (a photo with a sign analysed for real, with a job and a thumbnail;
look-alike photos; transcripts, one of them hostile), sees moment cards with the
query's words in ``<mark>`` and every text escaped, the thumbnail served for the
tenant only, "more like this" and paging by cursor; bad input is said on the page;
signed-out people go to sign in; another tenant's person finds nothing."""

from __future__ import annotations

import asyncio
import html
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.jobs.thumbnails import ThumbnailStore
from bastion.pipeline.engine import Engine
from bastion.policy.model import Policy
from bastion.portal.pages.search import PAGE_SIZE, clock, time_range
from bastion.samples.embedding import Embedder
from bastion.search.indexer import SearchIndexer, TranscriptSegment
from tests.support import media
from tests.support.app import Api, Tenant, running
from tests.support.browser import portal_settings
from tests.support.people import SignedIn, sign_in
from tests.support.settings import make_settings

pytestmark = pytest.mark.models

SIGN = "GRAND OPENING BAKERY"
HOSTILE = "<script>alert(1)</script> said the parcel robot"
PAGED = PAGE_SIZE + 3
_CARD_MEDIA = re.compile(r'<li class="card moment" data-media="([^"]+)"')


@dataclass
class World:
    api: Api
    a: Tenant
    viewer: SignedIn
    other: SignedIn
    """A viewer of another tenant."""
    sign_job: str
    thumbnail: bytes
    thumbnail_path: str
    """Its API path."""
    rocket: str
    rocket_copy: str


def cards(text: str) -> list[str]:
    """The media refs of the cards a page shows, in order."""
    return _CARD_MEDIA.findall(text)


def code_of(text: str) -> str | None:
    found = re.search(r'data-code="([a-z_]+)"', text)
    return found.group(1) if found else None


async def index_media(api: Api, tenant: Tenant) -> tuple[str, bytes, str, str, str]:
    svc = api.services
    index = svc.search
    assert isinstance(index, SearchIndexer)
    policy = Policy(name="search", analyzers=["labels", "ocr", "codes"])
    embedder = Embedder(svc.engine, "labels")

    sign = media.text_on_photo(SIGN)
    r = await api.client.post(
        "/v1/jobs", content=sign, headers={**tenant.headers, "Content-Type": "image/png"}
    )
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    name = f"{secrets.token_hex(16)}.jpg"
    thumbnail = media.jpeg("skimage-chelsea", scale=0.2)
    folder = svc.jobs.thumbnails.folder(job)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(thumbnail)
    api_path = ThumbnailStore.url(job, name)

    async def put(ref: str, data: bytes, thumb: str | None = None) -> None:
        result = await svc.moderation.moderate_bytes(data, policy, tenant=tenant.id)
        vector = await embedder.embed(await embedder.decode(data))
        await asyncio.to_thread(index.index_image, tenant.id, ref, result, vector, thumbnail=thumb)

    await put(job, sign, api_path)
    await put("img-rocket", media.jpeg("skimage-rocket"))
    await put("img-rocket-copy", media.jpeg("skimage-rocket", quality=55, scale=0.6))
    await put("img-china", media.jpeg("sklearn-china"))
    transcripts = {
        "aud-en": [
            TranscriptSegment(
                61.0, 64.5, "The delivery driver left the parcel beside the garage door", "en"
            )
        ],
        "aud-bad": [
            TranscriptSegment(1.0, 2.0, HOSTILE, "en", labels=("Blocked Word",), decision="block")
        ],
        **{
            f"aud-p{n:02d}": [TranscriptSegment(n, n + 1.0, f"the lighthouse keeper {n}", "en")]
            for n in range(PAGED)
        },
    }
    for ref, segments in transcripts.items():
        await asyncio.to_thread(index.index_transcript, tenant.id, ref, segments)
    return job, thumbnail, api_path, "img-rocket", "img-rocket-copy"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = make_settings(
        tmp_path_factory.mktemp("portal-search"),
        jobs={"run_worker": False},
        live={"run_sessions": False},
    )
    async with running(portal_settings(settings), engine) as api:
        a, b = await api.new_tenant(), await api.new_tenant()
        job, thumb, path, rocket, copy = await index_media(api, a)
        viewer = await sign_in(api, "viewer", a.id)
        other = await sign_in(api, "viewer", b.id)
        try:
            yield World(api, a, viewer, other, job, thumb, path, rocket, copy)
        finally:
            await viewer.client.aclose()
            await other.client.aclose()


async def page(
    who: SignedIn, path: str = "/portal/search", status: int = 200, **params: str
) -> str:
    r = await who.client.get(path, params=params or None)
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def test_times_are_shown_as_minutes_and_seconds() -> None:
    assert clock(0) == "0:00" and clock(64.5) == "1:04" and clock(3725) == "1:02:05"
    assert time_range(61.0, 64.5) == "1:01–1:04"
    assert time_range(3.0, 3.2) == "0:03" and time_range(None, None) is None


async def test_a_viewer_searches_and_sees_the_words_marked(world: World) -> None:
    empty = await page(world.viewer)
    assert 'href="/portal/search"' in empty and 'name="q"' in empty and "<ol" not in empty
    text = await page(world.viewer, q="parcel garage")
    assert cards(text)[0] == "aud-en"
    assert "<mark>parcel</mark>" in text and "<mark>garage</mark>" in text
    assert "1:01–1:04" in text


async def test_hostile_text_comes_back_escaped(world: World) -> None:
    text = await page(world.viewer, q="parcel robot")
    assert cards(text)[0] == "aud-bad"
    assert 'class="badge decision-block"' in text and "Blocked Word" in text
    assert "<script>alert" not in text
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt; said the <mark>parcel</mark> <mark>robot</mark>"
        in text
    )
    marked = await page(world.viewer, q="script alert")
    assert "&lt;<mark>script</mark>&gt;<mark>alert</mark>(1)&lt;/<mark>script</mark>&gt;" in marked
    # what the person typed is shown back escaped too
    typed = await page(world.viewer, q='"><script>alert(2)</script>')
    assert "<script>alert(2)" not in typed and "&lt;script&gt;alert(2)" in typed


async def test_a_sign_is_found_with_its_thumbnail_for_the_tenant_only(world: World) -> None:
    text = await page(world.viewer, q="bakery")
    assert cards(text)[0] == world.sign_job
    assert "<mark>BAKERY</mark>" in text
    name = world.thumbnail_path.rsplit("/", 1)[1]
    url = f"/portal/search/thumbnails/jobs/{world.sign_job}/{name}"
    assert f'src="{url}"' in text
    r = await world.viewer.client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == world.thumbnail
    assert (await world.other.client.get(url)).status_code == 404
    gone = f"/portal/search/thumbnails/jobs/{world.sign_job}/{'0' * 32}.jpg"
    assert (await world.viewer.client.get(gone)).status_code == 404
    assert (
        await world.viewer.client.get(f"/portal/search/thumbnails/files/x/{name}")
    ).status_code == 422


async def test_a_stream_frame_links_its_stream_and_thumbnail(world: World) -> None:
    api, svc = world.api, world.api.services
    stream_id = f"cam-{secrets.token_hex(3)}"
    r = await api.client.post(
        "/v1/streams", json={"id": stream_id, "channel": "docks"}, headers=world.a.headers
    )
    assert r.status_code == 201, r.text
    row = await asyncio.to_thread(svc.streams.get, world.a.id, stream_id)
    frame = media.benign_photos()["skimage-coffee"]
    name = await asyncio.to_thread(svc.live_thumbnails.save, row.id, frame)
    policy = Policy(name="search", analyzers=["ocr"])
    result = await svc.moderation.moderate_bytes(media.text_on_photo("HARBOUR CRANE"), policy)
    index = svc.search
    assert index is not None
    await asyncio.to_thread(
        index.index_image,
        world.a.id,
        stream_id,
        result,
        None,
        media_kind="stream",
        thumbnail=f"/v1/streams/{stream_id}/thumbnails/{name}",
    )
    text = await page(world.viewer, q="harbour crane")
    assert cards(text) == [stream_id]
    assert f'href="/portal/streams/{stream_id}"' in text
    url = f"/portal/search/thumbnails/streams/{stream_id}/{name}"
    assert f'src="{url}"' in text
    got = await world.viewer.client.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == (
        await asyncio.to_thread(svc.live_thumbnails.path(row.id, name).read_bytes)
    )
    assert (await world.other.client.get(url)).status_code == 404


async def test_more_like_this_shows_the_lookalike_first(world: World) -> None:
    text = await page(world.viewer, q="bakery")
    assert f'href="/portal/search/similar?media={world.sign_job}"' in text
    similar = await page(world.viewer, "/portal/search/similar", media=world.rocket)
    assert cards(similar)[0] == world.rocket_copy and world.rocket not in cards(similar)
    assert "Looks like" in similar
    missing = await page(world.viewer, "/portal/search/similar", 404, media="img-nope")
    assert code_of(missing) == "media_not_indexed"
    # another tenant's media is not indexed for the other tenant
    theirs = await page(world.other, "/portal/search/similar", 404, media=world.rocket)
    assert code_of(theirs) == "media_not_indexed"


async def test_filters_and_paging(world: World) -> None:
    first = await page(world.viewer, q="lighthouse keeper", field="transcript")
    shown = cards(first)
    assert len(shown) == PAGE_SIZE
    found = re.search(r'id="next-page" href="([^"]+)"', first)
    assert found, "no next page link"
    second = await page(world.viewer, html.unescape(found.group(1)))
    more = cards(second)
    assert len(more) == PAGED - PAGE_SIZE and not set(more) & set(shown)
    assert 'id="next-page"' not in second
    blocked = await page(world.viewer, q="parcel", decision="block")
    assert cards(blocked) == ["aud-bad"]
    images = await page(world.viewer, q="parcel", kind="image")
    assert "aud-bad" not in cards(images)
    one = await page(world.viewer, q="lighthouse keeper", media="aud-p03")
    assert cards(one) == ["aud-p03"]


async def test_bad_input_is_said_on_the_page(world: World) -> None:
    text = await page(world.viewer, status=400, q="?!")
    assert code_of(text) == "invalid_search_query" and 'name="q"' in text
    text = await page(world.viewer, status=400, q="parcel", cursor="garbled")
    assert code_of(text) == "invalid_cursor"
    text = await page(world.viewer, status=400, q="parcel", **{"from": "last week"})
    assert code_of(text) == "invalid_time"
    text = await page(world.viewer, status=422, q="parcel", kind="pdf")
    assert code_of(text) == "invalid_request"


async def test_another_tenant_finds_nothing(world: World) -> None:
    for q in ("bakery", "parcel", "lighthouse"):
        text = await page(world.other, q=q)
        assert cards(text) == [] and 'id="no-results"' in text, q


async def test_signed_out_people_go_to_sign_in(world: World) -> None:
    r = await world.api.client.get("/portal/search", params={"q": "bakery"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/portal/login?next=/portal/search")
    name = world.thumbnail_path.rsplit("/", 1)[1]
    r = await world.api.client.get(f"/portal/search/thumbnails/jobs/{world.sign_job}/{name}")
    assert r.status_code == 303


async def test_search_switched_off_is_said_on_the_page(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, search={"enabled": False})
    async with running(portal_settings(settings), engine) as api:
        person = await sign_in(api, "viewer")
        try:
            text = await page(person, status=503, q="bakery")
            assert code_of(text) == "search_disabled"
        finally:
            await person.client.aclose()
