"""Every time Bastion answers with is UTC with an offset, on SQLite and on PostgreSQL.

SQLite hands naive datetimes back and PostgreSQL hands them back in the session's
time zone, so the same object used to come back as ``2026-12-02T20:25:58.702922`` from
a GET after ``...Z`` from its POST. Here every endpoint that returns times (tenants,
keys, rules, streams, pushed frames, alerts, jobs, deliveries and their attempts) and
every webhook body is checked: each ``*_at`` / ``timestamp`` string must carry an
offset of zero and be the real moment (PostgreSQL runs its session in Asia/Kolkata,
+05:30, to catch a time that kept the server's zone or lost its offset). Filters
that take a time (``since``) must honour the offset a client sends.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from bastion.api.services import Services
from bastion.delivery.config import DeliveryConfig
from bastion.live.tables import Stream
from bastion.pipeline.engine import Engine
from bastion.rules import RuleMatch
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.tables import Tenant
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.databases import database_url as any_database_url
from tests.support.databases import pg_available
from tests.support.jobs import CODES_POLICY
from tests.support.media import benign_photos, encode
from tests.support.settings import make_settings
from tests.support.webhooks import Received, Receiver

pytestmark = pytest.mark.models
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
TIME_KEYS = re.compile(r"(_at|^timestamp)$")
PG_ZONE = "Asia/Kolkata"


@contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    """SQLite in ``folder``, or a PostgreSQL schema whose session zone is not UTC."""
    with any_database_url(kind, folder) as url:
        if kind == "sqlite":
            yield url
        else:
            yield url + f"%20-ctimezone%3D{PG_ZONE.replace('/', '%2F')}"


def stamps(body: Any, path: str = "$") -> list[tuple[str, str]]:
    """Every (path, value) of a time-named key holding a string, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str) and TIME_KEYS.search(key):
                found.append((f"{path}.{key}", value))
            else:
                found += stamps(value, f"{path}.{key}")
    elif isinstance(body, list):
        for i, value in enumerate(body):
            found += stamps(value, f"{path}[{i}]")
    return found


def assert_utc(body: Any, *, at_least: int = 1) -> list[datetime]:
    """Each time in ``body`` is RFC 3339, offset zero and within minutes of now."""
    found = stamps(body)
    assert len(found) >= at_least, (found, body)
    now = datetime.now(UTC)
    times = []
    for where, text in found:
        assert RFC3339.match(text), f"{where} = {text!r} is not RFC 3339 with an offset"
        parsed = datetime.fromisoformat(text)
        assert parsed.utcoffset() == timedelta(0), f"{where} = {text!r} is not UTC"
        assert abs(parsed - now) < timedelta(minutes=10), f"{where} = {text!r} is not now"
        times.append(parsed)
    return times


@dataclass
class Api:
    client: httpx.AsyncClient
    services: Services
    receiver: Receiver
    kind: str


def failing_path(call: Received) -> int:
    """HTTP 500 to a POST to ``/fail``, 200 to the others."""
    return 500 if call.path == "/fail" else 200


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A receiver recording every POST; a POST to ``/fail`` is answered with HTTP 500."""
    with Receiver(failing_path) as r:
        yield r


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgres"])
async def api(
    request: pytest.FixtureRequest,
    engine: Engine,
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp(f"times-{request.param}")
    with database_url(request.param, folder) as url:
        settings = make_settings(
            folder,
            database_url=url,
            allow_private_urls=True,
            live={"alert_webhook_url": receiver.base + "/alerts"},
            delivery=DeliveryConfig(initial_delay_s=600, max_delay_s=600, poll_interval_s=0.05),
        )
        async with running(settings, engine) as started:
            yield Api(started.client, started.services, receiver, request.param)


async def new_tenant(api: Api) -> tuple[str, dict[str, str], dict[str, Any]]:
    tid = f"t{uuid.uuid4().hex[:10]}"
    r = await api.client.post("/v1/tenants", json={"id": tid, "name": tid}, headers=AUTH)
    assert r.status_code == 201, r.text
    return tid, {"Authorization": f"Bearer {r.json()['admin_key']['key']}"}, r.json()


def png() -> bytes:
    return encode(benign_photos()["skimage-coffee"], "PNG")


async def get_ok(api: Api, url: str, headers: dict[str, str], **kw: Any) -> Any:
    r = await api.client.get(url, headers=headers, **kw)
    assert r.status_code == 200, (url, r.text)
    return r.json()


def shifted(moment: datetime, hours: float) -> str:
    """``moment`` written in another zone: the same instant, another offset."""
    return moment.astimezone(timezone(timedelta(hours=hours))).isoformat()


async def test_tenants_and_keys(api: Api) -> None:
    tid, h, created = await new_tenant(api)
    assert_utc(created, at_least=2)  # the tenant and its admin key
    listed = await get_ok(api, "/v1/tenants", AUTH)
    assert_utc(next(t for t in listed if t["id"] == tid))
    assert_utc(await get_ok(api, "/v1/tenant", h))
    r = await api.client.patch("/v1/tenant", json={"default_policy": "default"}, headers=h)
    assert r.status_code == 200, r.text
    assert_utc(r.json())
    r = await api.client.post("/v1/keys", json={"name": "reader", "scopes": ["read"]}, headers=h)
    assert r.status_code == 201, r.text
    key = r.json()
    assert_utc(key)
    r = await api.client.delete(f"/v1/keys/{key['id']}", headers=h)
    assert r.status_code == 200, r.text
    assert_utc(r.json(), at_least=2)  # created_at and revoked_at
    keys = await get_ok(api, "/v1/keys", h)
    assert_utc(keys, at_least=3)
    # policies carry no times today; any they gain must follow the same rule
    assert_utc(await get_ok(api, "/v1/policies", h), at_least=0)
    assert_utc(await get_ok(api, "/v1/policies/default", h), at_least=0)


async def test_rules(api: Api) -> None:
    _, h, _ = await new_tenant(api)
    text = "name: g\nchannel_pattern: '.*'\nrules:\n  - name: w\n    categories: [Weapons]\n"
    r = await api.client.post(
        "/v1/rules", content=text, headers={**h, "Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert_utc(r.json(), at_least=2)
    assert_utc(await get_ok(api, "/v1/rules", h), at_least=2)
    assert_utc(await get_ok(api, f"/v1/rules/{rid}", h), at_least=2)
    r = await api.client.put(f"/v1/rules/{rid}", json=r.json()["spec"], headers=h)
    assert r.status_code == 200, r.text
    assert_utc(r.json(), at_least=2)


def raise_alert(svc: Services, stream_pk: str) -> str:
    """What a stream session does when a rule fires: raise in a transaction of its own."""
    match = RuleMatch(
        rule_set="g", rule="w", action="alert", labels=[("Weapons", 91.0)], reason="w fired"
    )
    with svc.alerts.sessions.begin() as s:
        row = s.get(Stream, stream_pk, with_for_update=True)
        assert row is not None
        alert, _ = svc.alerts.raise_in(
            s, row, match, rule_set="g", thumbnail=None, frame_ms=1000, sampled_at=time.time()
        )
        return alert.id


async def test_streams_frames_and_alerts(api: Api) -> None:
    tid, h, _ = await new_tenant(api)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    r = await api.client.post("/v1/streams", json={"id": sid, "channel": "c"}, headers=h)
    assert r.status_code == 201, r.text
    assert_utc(r.json(), at_least=2)
    r = await api.client.post(
        f"/v1/streams/{sid}/frames",
        content=png(),
        headers={**h, "Content-Type": "image/png"},
    )
    assert r.status_code == 200, r.text
    assert_utc(r.json()["stream"], at_least=3)  # created, updated and last frame
    assert_utc(await get_ok(api, "/v1/streams", h), at_least=3)
    assert_utc(await get_ok(api, f"/v1/streams/{sid}", h), at_least=3)

    with api.services.db_sessions() as s:
        pk = s.scalars(select(Stream.id).where(Stream.tenant_id == tid)).one()
    alert_id = await asyncio.to_thread(raise_alert, api.services, pk)
    alert = await get_ok(api, f"/v1/alerts/{alert_id}", h)
    times = assert_utc(alert, at_least=5)  # first, last, created, updated, evidence.sampled
    assert_utc(await get_ok(api, "/v1/alerts", h), at_least=5)
    r = await api.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=h)
    assert r.status_code == 200, r.text
    assert_utc(r.json(), at_least=5)
    updated = datetime.fromisoformat(r.json()["updated_at"])
    assert updated >= max(times) - timedelta(seconds=1)

    # a `since` written in any zone means the same instant
    for hours in (5.5, -7, 0):
        before = {"since": shifted(updated - timedelta(seconds=1), hours)}
        after = {"since": shifted(updated + timedelta(seconds=1), hours)}
        assert [a["id"] for a in (await get_ok(api, "/v1/alerts", h, params=before))["alerts"]]
        assert not (await get_ok(api, "/v1/alerts", h, params=after))["alerts"]

    # the alert webhook (sent when it was raised and acknowledged) carries UTC times too
    await api.receiver.wait("/alerts", timeout=30)
    for event in api.receiver.events("/alerts"):
        if event["data"]["alert"]["id"] == alert_id:
            assert_utc(event, at_least=6)  # the envelope's timestamp and the alert's
    r = await api.client.post(f"/v1/streams/{sid}/stop", headers=h)
    assert r.status_code == 200, r.text
    assert_utc(r.json(), at_least=4)  # stopped_at too


async def test_jobs_deliveries_and_webhooks(api: Api) -> None:
    _, h, _ = await new_tenant(api)
    r = await api.client.put(
        "/v1/policies/codes-only",
        content=CODES_POLICY,
        headers={**h, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    r = await api.client.post(
        "/v1/jobs",
        params={"policy": "codes-only", "callback_url": api.receiver.base + "/fail"},
        content=png(),
        headers={**h, "Content-Type": "image/png"},
    )
    assert r.status_code == 202, r.text
    assert_utc(r.json())
    job_id = r.json()["id"]
    created = datetime.fromisoformat(r.json()["created_at"])

    deadline = time.monotonic() + 60
    while True:  # until the job ran and its webhook was tried once (the receiver fails it)
        job = await get_ok(api, f"/v1/jobs/{job_id}", h)
        if job["deliveries"] and job["deliveries"][0]["history"]:
            break
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)
    # created, started, finished; the delivery's created and next attempt; the attempt
    assert_utc(job, at_least=6)
    assert_utc(await get_ok(api, "/v1/jobs", h), at_least=3)
    deliveries = await get_ok(api, "/v1/deliveries", h)
    assert_utc(deliveries, at_least=2)
    for path, key in (("/v1/jobs", "jobs"), ("/v1/deliveries", "deliveries")):
        for hours in (5.5, -7):
            early = {"since": shifted(created - timedelta(seconds=1), hours)}
            late = {"since": shifted(created + timedelta(minutes=5), hours)}
            assert (await get_ok(api, path, h, params=early))[key], (path, early)
            assert not (await get_ok(api, path, h, params=late))[key], (path, late)
    await api.receiver.wait("/fail", timeout=30)
    events = api.receiver.events("/fail")
    assert_utc([e for e in events if e["data"].get("job_id") == job_id], at_least=1)


def test_stored_times_read_back_as_the_same_utc_instant(tmp_path: Path) -> None:
    """Naive (taken as UTC), UTC and other-zone times round-trip as the same instant and
    compare as that instant; bound times at the edge of what Python holds do not overflow."""
    zones = [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    kinds = ["sqlite", "postgres"] if pg_available() else ["sqlite"]
    for kind in kinds:
        with database_url(kind, tmp_path) as url:
            db = make_engine(url)
            try:
                migrate(db)
                sessions = session_factory(db)
                written: dict[str, datetime] = {}
                with sessions.begin() as s:
                    for i, tz in enumerate(zones):
                        moment = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=tz)
                        written[f"z{i}"] = moment if tz else moment.replace(tzinfo=UTC)
                        s.add(Tenant(id=f"z{i}", name="z", created_at=moment))
                with sessions() as s:
                    rows = {t.id: t.created_at for t in s.scalars(select(Tenant))}
                    for tid, moment in written.items():
                        assert rows[tid] == moment and rows[tid].utcoffset() == timedelta(0)
                    ahead = written["z2"] + timedelta(seconds=1)
                    newer = s.scalars(select(Tenant.id).where(Tenant.created_at >= ahead)).all()
                    assert {"z0", "z1", "z3"} <= set(newer) and "z2" not in newer, (kind, newer)
                    # a client's `since` at the edge of what Python holds does not overflow
                    first = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
                    last = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-9)))
                    assert len(s.scalars(select(Tenant).where(Tenant.created_at >= first)).all())
                    assert not s.scalars(select(Tenant).where(Tenant.created_at >= last)).all()
            finally:
                db.dispose()
