"""Where a result's URLs were found (QR codes or OCR text), with the real models: in image,
animation and video results, kept by stored and near-duplicate reuse, and read by rules."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import qrcode
from PIL import Image
from sqlalchemy import update

from bastion.dedup import fingerprint
from bastion.dedup.config import DedupConfig
from bastion.dedup.tables import DedupEntry
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import parse_policy
from bastion.policy.model import Lists, Policy
from bastion.results import RESULT_FORMAT, ModerationResult, UrlOrigin
from bastion.rules import compile_rule_set, evaluate, explain
from bastion.rules.compiled import ResolvedRules
from bastion.rules.loader import parse_rule_set
from bastion.text.url_origins import distinct_urls
from bastion.text.urls import extract_urls
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.dedup import rows, settings_for
from tests.support.media import benign_photos, encode, sha
from tests.support.textimages import banner
from tests.support.video import write_video

pytestmark = pytest.mark.models

QR_URL = "https://promo.qr-shop.com/x"
TEXT = "Deals at spam-shop.com/win today"
TEXT_URL = "http://spam-shop.com/win"
URLS_POLICY = """name: urls
description: OCR and the code reader, against a blocked domain
analyzers: [ocr, codes]
rules:
  - name: illegal-ads
    categories: [Blocked Domain]
    block: 50
"""
RULES = """name: url-rules
channel_pattern: ".*"
rules:
  - name: text-domain
    urls: {domains: [spam-shop.com]}
  - name: code-domain
    urls: {domains: [qr-shop.com]}
  - name: from-codes
    urls: {domains: [spam-shop.com, qr-shop.com], sources: [codes]}
  - name: from-text
    urls: {domains: [spam-shop.com, qr-shop.com], sources: [text]}
  - name: tenant-domains
    lists: [blocked_domains]
"""
TENANT_LISTS = Lists(blocked_domains=["spam-shop.com"])


def picture(*, text: str | None = TEXT, qr: str | None = QR_URL) -> np.ndarray:
    """A real photo with ``text`` on a banner and a QR code carrying ``qr`` in a corner."""
    rgb = benign_photos()["skimage-coffee"]
    if text is not None:
        rgb = banner(rgb, "en", text)
    img = Image.fromarray(rgb).copy()
    if qr is not None:
        code = qrcode.make(qr).get_image().convert("RGB").resize((120, 120))
        img.paste(code, (10, 10))
    return np.asarray(img)


def png(rgb: np.ndarray) -> bytes:
    return encode(rgb, "PNG")


async def moderate(c: httpx.AsyncClient, data: bytes) -> dict[str, Any]:
    """``data`` (PNG or JPEG) through the API, under the default policy."""
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    r = await c.post("/v1/moderate", content=data, headers={**AUTH, "Content-Type": kind})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def urls_policy() -> Policy:
    return parse_policy(URLS_POLICY)


@pytest.fixture(scope="module")
def url_rules() -> ResolvedRules:
    return compile_rule_set(parse_rule_set(RULES).value).resolve()


def assert_origins_point_home(result: ModerationResult) -> None:
    """Every origin names a code or line of the result that carries its URL, and the
    result's URLs are those of its origins."""
    for o in result.url_origins:
        if o.source == "codes":
            code = result.codes[o.index]
            assert o.url in code.urls and o.frame == code.frame
        else:
            line = result.text[o.index]
            assert o.url in extract_urls(line.text) and o.frame == line.frame
    assert result.urls == distinct_urls(result.url_origins)


def fired(
    rules: ResolvedRules, result: ModerationResult, lists: Lists | None = None
) -> dict[str, list[str]]:
    return {m.rule: m.urls for m in evaluate(rules, result, lists)}


# ---- images ---------------------------------------------------------------------------------


async def test_qr_code_and_ocr_text_urls_carry_their_origins(
    moderation: Moderation, urls_policy: Policy
) -> None:
    result = await moderation.moderate_bytes(png(picture()), urls_policy)
    assert result.urls == [QR_URL, TEXT_URL]
    [code_origin, text_origin] = result.url_origins
    assert code_origin.source == "codes" and code_origin.url == QR_URL
    assert result.codes[code_origin.index].text == QR_URL
    assert text_origin.source == "text" and text_origin.url == TEXT_URL
    assert "spam-shop.com" in result.text[text_origin.index].text
    assert code_origin.frame is None and text_origin.frame is None
    assert_origins_point_home(result)

    only_text = await moderation.moderate_bytes(png(picture(qr=None)), urls_policy)
    assert only_text.codes == [] and only_text.urls == [TEXT_URL]
    assert [(o.source, o.url) for o in only_text.url_origins] == [("text", TEXT_URL)]
    assert_origins_point_home(only_text)

    only_code = await moderation.moderate_bytes(png(picture(text=None)), urls_policy)
    assert only_code.urls == [QR_URL]
    assert only_code.url_origins == [UrlOrigin(url=QR_URL, source="codes", index=0)]
    assert_origins_point_home(only_code)

    # the same URL on the code and in the text: one URL, found in two places
    twice = await moderation.moderate_bytes(png(picture(qr=TEXT_URL)), urls_policy)
    assert twice.urls == [TEXT_URL]
    assert [o.source for o in twice.url_origins] == ["codes", "text"]
    assert_origins_point_home(twice)


async def test_origins_of_an_animation_name_the_frame(
    moderation: Moderation, urls_policy: Policy
) -> None:
    frames = [Image.fromarray(picture(qr=None)), Image.fromarray(picture(text=None))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=500)
    result = await moderation.moderate_bytes(buf.getvalue(), urls_policy)
    assert result.media.frames == result.media.frames_analyzed == 2
    assert result.urls == [QR_URL, TEXT_URL]
    assert [(o.source, o.url, o.frame) for o in result.url_origins] == [
        ("codes", QR_URL, 1),
        ("text", TEXT_URL, 0),
    ]
    assert_origins_point_home(result)


# ---- rules ------------------------------------------------------------------------------------


async def test_domain_rules_fire_from_ocr_text_and_from_codes(
    moderation: Moderation, urls_policy: Policy, url_rules: ResolvedRules
) -> None:
    both = await moderation.moderate_bytes(png(picture()), urls_policy, extra_lists=TENANT_LISTS)
    assert fired(url_rules, both, TENANT_LISTS) == {
        "text-domain": [TEXT_URL],
        "code-domain": [QR_URL],
        "from-codes": [QR_URL],
        "from-text": [TEXT_URL],
        "tenant-domains": [TEXT_URL],
    }
    # the tenant's blocked domain in the text makes a policy label too
    assert any(
        lab.name == "Blocked Domain" and lab.source == f"url:{TEXT_URL}" for lab in both.labels
    )

    text = await moderation.moderate_bytes(png(picture(qr=None)), urls_policy)
    assert fired(url_rules, text, TENANT_LISTS) == {
        "text-domain": [TEXT_URL],
        "from-text": [TEXT_URL],
        "tenant-domains": [TEXT_URL],
    }
    code = await moderation.moderate_bytes(png(picture(text=None)), urls_policy)
    assert fired(url_rules, code, TENANT_LISTS) == {
        "code-domain": [QR_URL],
        "from-codes": [QR_URL],
    }
    not_from_codes = next(o for o in explain(url_rules, text) if o.rule == "from-codes")
    assert not not_from_codes.fired and "no URL found in codes" in not_from_codes.reason


async def test_rules_take_the_urls_the_engine_found(
    moderation: Moderation, urls_policy: Policy, url_rules: ResolvedRules
) -> None:
    """Rules read the result's URL origins; they do not search the text again."""
    result = await moderation.moderate_bytes(png(picture(qr=None)), urls_policy)
    assert "spam-shop.com" in result.text[0].text
    bare = result.model_copy(update={"url_origins": []})
    outcomes = {o.rule: o for o in explain(url_rules, bare)}
    assert not outcomes["text-domain"].fired
    assert "no URL found in codes or text" in outcomes["text-domain"].reason
    assert fired(url_rules, result)["text-domain"] == [TEXT_URL]


# ---- video ------------------------------------------------------------------------------------


async def test_video_frames_carry_their_origins(
    moderation: Moderation, urls_policy: Policy, tmp_path: Path
) -> None:
    plain, marked = picture(text=None, qr=None), picture()
    fps = 5
    video = write_video(tmp_path / "urls.mp4", [plain] * fps + [marked] * (2 * fps), fps=fps)
    res = await moderate_video(moderation, video, urls_policy, extra_lists=TENANT_LISTS)
    assert [f.timestamp_ms for f in res.frames] == [0, 1000, 2000]
    first, *flagged = res.frames
    assert first.urls == [] and first.url_origins == []
    for frame in flagged:
        assert frame.decision == "block"
        assert frame.urls == [QR_URL, TEXT_URL]
        assert [(o.source, o.url) for o in frame.url_origins] == [
            ("codes", QR_URL),
            ("text", TEXT_URL),
        ]
        for o in frame.url_origins:
            if o.source == "codes":
                assert frame.codes[o.index] == QR_URL
            else:
                assert o.url in extract_urls(frame.text[o.index])
        assert frame.urls == distinct_urls(frame.url_origins)


# ---- stored and near-duplicate results ---------------------------------------------------


async def test_stored_and_near_duplicate_results_keep_their_origins(
    engine: Engine, tmp_path: Path
) -> None:
    original = png(picture())
    copy = encode(picture(), "JPEG", quality=75)  # other bytes, nearly the same pixels
    settings = settings_for(tmp_path / "data", dedup=DedupConfig(near_duplicate_max_distance=8))
    async with running(settings, engine) as api:
        c = api.client
        first = await moderate(c, original)
        assert first["cached"] is False and first["urls"] == [QR_URL, TEXT_URL]
        near = await moderate(c, copy)
        assert near["cached"] is True and near["near_duplicate_of"]["sha256"] == sha(original)
        assert near["url_origins"] == first["url_origins"]
        result = ModerationResult.model_validate(near)
        assert_origins_point_home(result)
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        again = await moderate(c, original)
        assert again["cached"] is True and svc.dedup.stats.stored_hits == 1
        assert again["url_origins"] == first["url_origins"]


async def test_results_stored_in_an_older_layout_are_purged(
    engine: Engine, tmp_path: Path, url_rules: ResolvedRules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result stored without URL origins would hide OCR URLs from the rules: the result
    layout is part of the model fingerprint, so such rows are purged, not reused."""
    data = png(picture(qr=None))
    settings = settings_for(tmp_path / "data")
    with monkeypatch.context() as patch:
        patch.setattr(fingerprint, "RESULT_FORMAT", RESULT_FORMAT - 1)
        async with running(settings, engine) as api:
            c, svc = api.client, api.services
            first = await moderate(c, data)
            assert first["url_origins"] and first["cached"] is False
            old_fp = svc.dedup.model_fingerprint
            stored = {k: v for k, v in first.items() if k not in {"url_origins", "cached"}}
            with svc.db_sessions.begin() as s:
                s.execute(update(DedupEntry).values(result=stored))
            svc.moderation.cache.clear()
            old = ModerationResult.model_validate(await moderate(c, data))
            assert old.cached and old.url_origins == []
            assert "text-domain" not in fired(url_rules, old)  # what reusing it would do
    async with running(settings, engine) as api:
        c, svc = api.client, api.services
        assert svc.dedup.model_fingerprint != old_fp
        assert rows(svc) == [] and svc.dedup.stats.purged == 1
        again = ModerationResult.model_validate(await moderate(c, data))
        assert again.cached is False and again.url_origins
        assert fired(url_rules, again)["text-domain"] == [TEXT_URL]
        assert [r.model_fp for r in rows(svc, sha(data))] == [svc.dedup.model_fingerprint]
