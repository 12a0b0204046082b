"""The rules API end to end, in process, with the real models, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from bastion.pipeline.engine import Engine
from tests.support.app import Api, running
from tests.support.auth import AUTH
from tests.support.databases import database_url
from tests.support.media import photo, qr_on_photo, text_on_photo
from tests.support.rules import BLOCKED_DOMAIN, BLOCKED_WORD, STREAM_RULES
from tests.support.settings import make_settings

pytestmark = pytest.mark.models
YAML = {**AUTH, "Content-Type": "application/yaml"}


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgres"])
async def api(
    request: pytest.FixtureRequest, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("rules-api")
    with database_url(request.param, folder) as url:
        async with running(make_settings(folder, database_url=url), engine) as started:
            yield started


def rules_yaml(name: str, where: str, interval: float = 10, extra: str = "") -> str:
    return (
        f"name: {name}\n{where}\nsample_interval_s: {interval}\n{extra}"
        "rules:\n  - name: spam\n    urls: {domains: [" + BLOCKED_DOMAIN + "]}\n"
        "    action: auto_stop\n"
    )


def errors(r: httpx.Response, code: str = "invalid_rules") -> dict[str, dict[str, Any]]:
    assert r.status_code in (409, 422), r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    return {e["path"]: e for e in body["details"]["errors"]}


async def test_crud_round_trip(api: Api) -> None:
    h = await api.tenant()
    yh = {**h, "Content-Type": "application/yaml"}
    c = api.client
    r = await c.post("/v1/rules", content=rules_yaml("g", "channel_pattern: '.*'"), headers=yh)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["scope"] == "global" and created["spec"]["tiers"]["trusted"] == 3.0
    rid = created["id"]
    body = {
        "name": "g",
        "channel_pattern": "^test-",
        "priority": 5,
        "rules": [{"name": "knives", "categories": ["Weapons"], "min_confidence": 70}],
    }
    r = await c.put(f"/v1/rules/{rid}", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["version"] != created["version"] and r.json()["priority"] == 5
    r = await c.get("/v1/rules", headers=h)
    assert [x["id"] for x in r.json()] == [rid]
    r = await c.get(f"/v1/rules/{rid}", headers=h)
    assert r.json()["spec"]["rules"][0]["categories"] == ["Weapons"]
    assert (await c.get(f"/v1/rules/{rid}", headers=AUTH)).status_code == 404  # other tenant
    # what GET gives (defaults filled in) can be edited and sent back as it is
    r = await c.post("/v1/rules", content=rules_yaml("own", "channel: alice"), headers=yh)
    own = r.json()
    r = await c.put(f"/v1/rules/{own['id']}", json=own["spec"], headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == own["version"]
    assert (await c.delete(f"/v1/rules/{rid}", headers=h)).status_code == 204
    r = await c.get(f"/v1/rules/{rid}", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "rule_set_not_found"


async def test_validation_errors_carry_lines_and_columns(api: Api) -> None:
    h = {**(await api.tenant()), "Content-Type": "application/yaml"}
    text = (
        "name: bad\nchannel_pattern: '.*'\nsample_interval_s: -1\nrules:\n"
        "  - name: a\n    categories: [Explicit Nudity]\n    min_confidence: 120\n"
        "  - name: b\n    text: {regex: 'promo(\\d+'}\n"
        "  - name: c\n    categories: [Wepons]\n"
    )
    found = errors(await api.client.post("/v1/rules", content=text, headers=h))
    assert set(found) == {
        "sample_interval_s",
        "rules.0.min_confidence",
        "rules.1.text.regex.0",
        "rules.2.categories.0",
    }
    assert (found["sample_interval_s"]["line"], found["sample_interval_s"]["column"]) == (3, 20)
    assert found["rules.0.min_confidence"]["line"] == 7
    regex = found["rules.1.text.regex.0"]
    assert (regex["line"], regex["column"]) == (9, 25)  # the '(' that is never closed
    assert "position 5" in regex["message"]
    assert "did you mean 'Weapons'" in found["rules.2.categories.0"]["message"]
    r = await api.client.post(
        "/v1/rules", content="{oops", headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["line"] == 1
    r = await api.client.post("/v1/rules", content=b"", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_input"


async def test_rules_that_cannot_fire_under_the_policy_are_refused(api: Api) -> None:
    h = {**(await api.tenant()), "Content-Type": "application/yaml"}
    text = (
        "name: hate\nchannel_pattern: '.*'\nrules:\n"
        "  - name: symbols\n    categories: [Hate Symbols]\n    action: auto_stop\n"
    )
    found = errors(await api.client.post("/v1/rules", content=text, headers=h))
    assert "can never fire" in found["rules.0.categories"]["message"]
    assert found["rules.0.categories"]["line"] == 5
    missing = rules_yaml("p", "channel: a", extra="policy: nope\n")
    found = errors(await api.client.post("/v1/rules", content=missing, headers=h))
    assert found["policy"]["line"] == 4 and "not found" in found["policy"]["message"]


async def test_name_and_channel_conflicts_are_409_with_positions(api: Api) -> None:
    h = {**(await api.tenant()), "Content-Type": "application/yaml"}
    c = api.client
    assert (
        await c.post("/v1/rules", content=rules_yaml("a", "channel: alice"), headers=h)
    ).status_code == 201
    found = errors(
        await c.post("/v1/rules", content=rules_yaml("a", "channel: bob"), headers=h),
        "rule_set_conflict",
    )
    assert found["name"]["line"] == 1 and "exists" in found["name"]["message"]
    found = errors(
        await c.post("/v1/rules", content=rules_yaml("b", "channel: alice"), headers=h),
        "rule_set_conflict",
    )
    assert found["channel"]["line"] == 2


async def test_reader_keys_read_but_do_not_write(api: Api) -> None:
    h = await api.tenant()
    r = await api.client.post("/v1/keys", json={"name": "r", "scopes": ["read"]}, headers=h)
    reader = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await api.client.get("/v1/rules", headers=reader)).status_code == 200
    r = await api.client.post("/v1/rules", content=rules_yaml("x", "channel: y"), headers=reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"


async def test_export_import_round_trip_is_transactional(api: Api) -> None:
    src = {**(await api.tenant()), "Content-Type": "application/yaml"}
    c = api.client
    await c.post("/v1/rules", content=STREAM_RULES, headers=src)
    await c.post("/v1/rules", content=rules_yaml("alice", "channel: alice-live", 4), headers=src)
    exported = (await c.get("/v1/rules/export", headers=src)).text
    assert [rs["name"] for rs in yaml.safe_load(exported)["rule_sets"]] == ["live-default", "alice"]

    dst = {**(await api.tenant()), "Content-Type": "application/yaml"}
    await c.post("/v1/rules", content=rules_yaml("stale", "channel: old"), headers=dst)
    r = await c.post("/v1/rules/import?mode=replace", content=exported, headers=dst)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == ["live-default", "alice"] and r.json()["deleted"] == ["stale"]
    assert (await c.get("/v1/rules/export", headers=dst)).text == exported

    # one bad rule set: nothing of the document is saved
    bad = exported.replace("min_confidence: 80.0", "min_confidence: 800", 1)
    bad = bad.replace("name: alice\n", "name: bob\n")
    found = errors(await c.post("/v1/rules/import?mode=merge", content=bad, headers=dst))
    path = next(iter(found))
    assert path.startswith("rule_sets.0.rules.") and found[path]["line"] is not None
    assert (await c.get("/v1/rules/export", headers=dst)).text == exported
    # merge adds and updates by name and keeps the rest
    doc = "rule_sets:\n  - " + rules_yaml("bob", "channel: bob", 7).replace("\n", "\n    ")
    r = await c.post("/v1/rules/import?mode=merge", content=doc, headers=dst)
    assert r.status_code == 200, r.text
    names = [x["name"] for x in (await c.get("/v1/rules", headers=dst)).json()]
    assert names == ["live-default", "alice", "bob"]


async def test_saves_reach_the_rule_book_at_once(api: Api) -> None:
    h = {**(await api.tenant()), "Content-Type": "application/yaml"}
    tenant = (await api.client.get("/v1/tenant", headers=h)).json()["id"]
    book = api.services.rules
    r = await api.client.post(
        "/v1/rules", content=rules_yaml("g", "channel_pattern: '.*'", 6), headers=h
    )
    rid = r.json()["id"]
    resolved = book.resolve(tenant, "any-channel", tier="trusted")
    assert resolved is not None and resolved.sample_interval_s == 18.0
    await api.client.put(
        f"/v1/rules/{rid}", content=rules_yaml("g", "channel_pattern: '.*'", 2), headers=h
    )
    resolved = book.resolve(tenant, "any-channel", tier="new")
    assert resolved is not None and resolved.sample_interval_s == 1.0  # no wait for refresh
    await api.client.delete(f"/v1/rules/{rid}", headers=h)
    assert book.resolve(tenant, "any-channel") is None


async def test_rule_test_shows_what_fired_and_why(api: Api) -> None:
    h = await api.tenant()
    c = api.client
    await c.put("/v1/lists", json={"blocked_words": [BLOCKED_WORD]}, headers=h)
    img = qr_on_photo(f"https://www.{BLOCKED_DOMAIN}/deal?id=9")
    r = await c.post(
        "/v1/rules/test?tier=new",
        files={"file": ("qr.png", img, "image/png")},
        data={"rules": STREAM_RULES},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "auto_stop"
    assert body["rule_set"]["id"] is None and body["rule_set"]["sample_interval_s"] == 5.0
    assert body["rule_set"]["similarity_threshold"] == 31
    first = body["matches"][0]
    assert first["rule"] == "spam-domain" and first["urls"] == [
        f"https://www.{BLOCKED_DOMAIN}/deal?id=9"
    ]
    fired = {o["rule"]: o for o in body["fired"]}
    assert set(fired) == {"spam-domain", "qr-link"}
    qr = fired["qr-link"]["conditions"][0]
    assert qr["labels"][0] == {
        "name": "QR Code Link",
        "parent": "Illegal Ads",
        "confidence": 100.0,
        "threshold": 50.0,
        "analyzer": "codes",
    }
    not_fired = {o["rule"]: o for o in body["not_fired"]}
    assert "no label of Explicit Nudity" in not_fired["explicit"]["reason"]
    assert "nothing in the frame" in not_fired["tenant-lists"]["reason"]
    assert body["result"]["urls"] and body["warnings"] == []

    # a stored rule set by id, on rendered text with the tenant's blocked word
    hy = {**h, "Content-Type": "application/yaml"}
    rid = (await c.post("/v1/rules", content=STREAM_RULES, headers=hy)).json()["id"]
    text = text_on_photo(f"Best {BLOCKED_WORD} in town, win 100 now")
    r = await c.post(
        f"/v1/rules/test?rule_set_id={rid}",
        content=text,
        headers={**h, "Content-Type": "image/png"},
    )
    body = r.json()
    assert r.status_code == 200, r.text
    assert {m["rule"] for m in body["matches"]} == {"casino-ad", "tenant-lists"}
    assert body["action"] == "auto_stop" and body["rule_set"]["id"] == rid

    # by channel: resolves to the global rule set; a benign photo fires nothing
    r = await c.post(
        "/v1/rules/test",
        files={"file": ("cat.jpg", photo("skimage-chelsea"), "image/jpeg")},
        data={"channel": "cats-24-7"},
        headers=h,
    )
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["action"] is None and body["matches"] == [] and body["fired"] == []
    assert body["rule_set"]["name"] == "live-default" and len(body["not_fired"]) == 9


async def test_rule_test_input_errors(api: Api) -> None:
    h = await api.tenant()
    c = api.client
    img = {"file": ("cat.jpg", photo("skimage-coffee"), "image/jpeg")}
    r = await c.post("/v1/rules/test", files=img, headers=h)
    assert r.status_code == 400 and "exactly one" in r.json()["error"]["message"]
    r = await c.post(
        "/v1/rules/test", files=img, data={"channel": "x", "rules": STREAM_RULES}, headers=h
    )
    assert r.status_code == 400
    r = await c.post("/v1/rules/test", files=img, data={"channel": "nobody"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_rule_set"
    r = await c.post("/v1/rules/test", files=img, data={"rules": "name: x\nrules: [\n"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["line"] is not None
    r = await c.post("/v1/rules/test?rule_set_id=999999", files=img, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "rule_set_not_found"
