"""Statistics per tenant and UTC day: what is counted after real moderation (synchronous
calls, a job, pushed live frames), people's decisions and corrections, alerts and
stopped streams, as JSON (``GET /v1/stats``), CSV and the portal's page with its SVG
charts; tenants never see each other's counts; the in-memory counts reach the
``daily_counts`` table every few seconds and at shutdown, adding up across processes.
On SQLite and PostgreSQL, with the real models; one browser test takes the page's
screenshot."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bastion.pipeline.engine import Engine
from bastion.review.service import Reviewer
from bastion.stats.charts import Series as ChartSeries
from bastion.stats.charts import line_chart, nice_scale, stacked_bars
from bastion.stats.counter import DailyCounter
from bastion.stats.export import HEADER, report_csv
from bastion.stats.flush import CountFlusher
from bastion.stats.report import StatsReport
from bastion.stats.service import MAX_DAYS, InvalidPeriod, Period, StatsService, percentile
from bastion.stats.tables import DailyCount
from bastion.store.db import make_engine, session_factory
from tests.support.app import Api, running
from tests.support.browser import portal, portal_settings, screenshot
from tests.support.databases import database, sqlite_url
from tests.support.jobs import CODES_POLICY, wait_for
from tests.support.media import jpeg, qr_on_photo
from tests.support.people import sign_in
from tests.support.settings import make_settings

BLOCKED_URL = "https://evil.example/win"
REVIEW_POLICY = CODES_POLICY.replace("name: codes-only", "name: codes-review").replace(
    "block: 50", "review: 50"
)
WATCH_RULES = """\
name: stats-watch
channel_pattern: "^watch-"
sample_interval_s: 1
policy: codes-review
rules:
  - name: spam-review
    urls: {domains: [evil.example]}
    action: review
"""
HALT_RULES = """\
name: stats-halt
channel: halt-me
sample_interval_s: 1
policy: codes-only
rules:
  - name: spam-stop
    urls: {domains: [evil.example]}
    action: auto_stop
"""
HOSTILE_NAME = '<script>alert("x")</script> Ada'


def utc_today() -> date:
    return datetime.now(UTC).date()


def two_days() -> dict[str, str]:
    """Yesterday and today (UTC): a test running over midnight still finds its counts."""
    today = utc_today()
    return {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}


# ---- without a database ---------------------------------------------------------------


def test_a_period_defaults_to_the_last_30_days_and_is_bounded() -> None:
    today = date(2026, 3, 1)
    period = Period.of(None, None, today=today)
    assert (period.start, period.end, period.days) == (date(2026, 1, 31), today, 30)
    assert Period.of("2026-02-27", None, today=today).days == 3
    assert Period.of(None, "2026-01-10", today=today).start == date(2025, 12, 12)
    assert Period.of("2025-03-01", "2026-03-01").days == MAX_DAYS
    assert Period.of("0001-01-01", "0001-01-05").days == 5
    assert Period.of(None, "0001-01-05").start == date(1, 1, 1)
    refused = [
        ("2025-02-28", "2026-03-01"),  # 367 days
        ("2026-03-02", "2026-03-01"),  # from after to
        ("2026-02-30", None),
        ("20260201", None),
        ("2026-W05-1", None),
        (None, "9999-12-31"),
        (" 2026-02-01", None),
    ]
    for start, end in refused:
        with pytest.raises(InvalidPeriod) as error:
            Period.of(start, end, today=today)
        assert (error.value.code, error.value.status) == ("invalid_period", 400)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (50.0, 95.0)
    assert percentile([1.0, 2.0, 3.0, 10.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 10.0], 95) == 10.0


def test_the_counter_drains_and_takes_back_what_was_not_written() -> None:
    today = date(2026, 5, 4)
    counter = DailyCounter(today=lambda: today)
    for decision in ("allow", "allow", "block"):
        counter.moderated("t1", "api", decision)
    counter.moderated("t2", "live", "allow")
    counter.add("t1", "moderated.api", "allow", 3, day=date(2026, 5, 3))
    drained = counter.drain()
    assert drained == {
        ("t1", today, "moderated.api", "allow"): 2,
        ("t1", today, "moderated.api", "block"): 1,
        ("t2", today, "moderated.live", "allow"): 1,
        ("t1", date(2026, 5, 3), "moderated.api", "allow"): 3,
    }
    assert counter.pending() == 0 and counter.drain() == {}
    counter.moderated("t1", "api", "allow")
    counter.restore(drained)
    assert counter.drain()[("t1", today, "moderated.api", "allow")] == 3


def test_chart_geometry_stacks_and_scales() -> None:
    assert nice_scale(0) == (1.0, 1.0)
    assert nice_scale(7) == (8.0, 2.0)
    assert nice_scale(100) == (100.0, 20.0)
    assert nice_scale(0.3) == (0.3, 0.1)
    assert nice_scale(2, whole=True) == (2.0, 1.0)
    assert nice_scale(0.3, whole=True) == (1.0, 1.0)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(3)]
    chart = stacked_bars(
        "c",
        "Items",
        days,
        [ChartSeries("a", [1, 0, 4], "#111111"), ChartSeries("b", [1, 2, 4], "#222222")],
        "items",
    )
    assert not chart.empty
    assert len(chart.bars) == 5  # zero segments are not drawn
    # the tallest day (8) reaches the top of the scale (8): its bars fill the plot
    tallest = [b for b in chart.bars if b.title.startswith("2026-01-03")]
    assert sum(b.height for b in tallest) == pytest.approx(chart.bottom - chart.top, abs=0.05)
    assert min(b.y for b in tallest) == pytest.approx(chart.top, abs=0.05)
    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    assert [t.label for t in chart.x_ticks] == ["Jan 1", "Jan 2", "Jan 3"]
    assert "2026-01-03: b 4 (of 8)" in [b.title for b in chart.bars]
    lines = line_chart("l", "Wait", days, [ChartSeries("p50", [3.0, None, 5.0], "#333")], "s")
    assert len(lines.lines) == 2 and len(lines.dots) == 2  # the day without a value breaks it
    empty = stacked_bars("e", "Nothing", days, [ChartSeries("a", [0, 0, 0], "#111")], "items")
    assert empty.empty and not empty.bars
    year = [date(2025, 1, 1) + timedelta(days=i) for i in range(366)]
    wide = stacked_bars("y", "Year", year, [ChartSeries("a", [1] * 366, "#111")], "items")
    assert len(wide.x_ticks) <= 10


def test_csv_keys_never_run_as_spreadsheet_formulas() -> None:
    day = {
        "analysed": {"api": 1, "job": 0, "live": 0},
        "automatic": {"allow": 1, "review": 0, "block": 0},
        "automatic_by_source": {
            "api": {"allow": 1, "review": 0, "block": 0},
            "job": {"allow": 0, "review": 0, "block": 0},
            "live": {"allow": 0, "review": 0, "block": 0},
        },
        "people": {"allow": 0, "block": 0, "escalate": 0},
        "people_by_source": {"moderator": 0, "api": 0},
        "alerts": {"=cmd|'/c calc'!A1": 2},
        "streams_stopped": {"rule": 0, "person": 0, "api": 0, "ended": 0},
        "time_to_decision": {"decided": 0, "p50_s": None, "p95_s": None},
    }
    report = StatsReport.model_validate(
        {
            "tenant_id": "t",
            "from": "2026-01-01",
            "to": "2026-01-01",
            "generated_at": "2026-01-02T00:00:00Z",
            "totals": day,
            "days": [{**day, "day": "2026-01-01"}],
            "moderators": [],
            "rules": [],
        }
    )
    table = list(csv.reader(io.StringIO(report_csv(report))))
    assert table[0] == list(HEADER)
    assert ["2026-01-01", "alerts", "'=cmd|'/c calc'!A1", "2"] in table
    assert ["2026-01-01", "time_to_decision", "p50_s", ""] in table


# ---- the counts reach the database --------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


async def test_counts_are_written_every_few_seconds_and_add_up(
    db_kind: str, tmp_path: Path
) -> None:
    with database(db_kind, tmp_path) as (sessions, _):
        today = utc_today()
        one, other = DailyCounter(), DailyCounter()  # two processes counting one tenant
        stop = asyncio.Event()
        first = StatsService(sessions, one, flush_interval_s=0.05)
        second = CountFlusher(other, sessions, interval_s=0.05)
        tasks = [
            asyncio.create_task(first.run_forever(stop)),
            asyncio.create_task(second.run_forever(stop)),
        ]

        def stored() -> dict[tuple[str, str], int]:
            with sessions() as s:
                rows = s.execute(
                    select(DailyCount.name, DailyCount.key, DailyCount.count).where(
                        DailyCount.tenant_id == "t-flush", DailyCount.day == today
                    )
                )
                return {(name, key): n for name, key, n in rows}

        for _ in range(5):
            one.moderated("t-flush", "api", "allow")
            other.moderated("t-flush", "api", "allow")
        other.moderated("t-flush", "live", "block")
        deadline = asyncio.get_running_loop().time() + 10
        while stored() != {("moderated.api", "allow"): 10, ("moderated.live", "block"): 1}:
            assert asyncio.get_running_loop().time() < deadline, stored()
            await asyncio.sleep(0.05)
        # what is counted as the loops stop is written by their last round
        one.moderated("t-flush", "api", "allow")
        stop.set()
        await asyncio.gather(*tasks)
        assert stored()[("moderated.api", "allow")] == 11
        assert one.pending() == 0 and other.pending() == 0


async def test_a_failed_write_keeps_the_counts_for_the_next(tmp_path: Path) -> None:
    db = make_engine(sqlite_url(tmp_path, "unmigrated.db"))  # no daily_counts table
    try:
        counter = DailyCounter()
        counter.moderated("t", "api", "allow")
        flusher = CountFlusher(counter, session_factory(db))
        await flusher.flush_now()  # logged, not raised
        assert counter.pending() == 1
    finally:
        db.dispose()


# ---- through the API, with the real models --------------------------------------------


@dataclass
class Tenant:
    id: str
    admin: dict[str, str]
    reader: dict[str, str]


async def _tenant(api: Api) -> Tenant:
    made = await api.new_tenant()
    for policy in (CODES_POLICY, REVIEW_POLICY):
        name = re.search(r"name: (\S+)", policy)
        assert name is not None
        r = await api.client.put(
            f"/v1/policies/{name.group(1)}",
            content=policy,
            headers={**made.headers, "Content-Type": "application/yaml"},
        )
        assert r.status_code == 200, r.text
    return Tenant(made.id, made.headers, await api.reader(made.headers))


def _type(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


async def _moderate(api: Api, t: Tenant, data: bytes, policy: str, **params: str) -> Any:
    r = await api.client.post(
        "/v1/moderate",
        params={"policy": policy, **params},
        content=data,
        headers={**t.admin, "Content-Type": _type(data)},
    )
    assert r.status_code == 200, r.text
    return r


async def _push(api: Api, t: Tenant, stream: str, data: bytes, ms: int) -> dict[str, Any]:
    r = await api.client.post(
        f"/v1/streams/{stream}/frames",
        content=data,
        params={"timestamp_ms": ms},
        headers={**t.admin, "Content-Type": _type(data)},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["analyzed"], body
    return body


async def _stream(api: Api, t: Tenant, stream: str, channel: str) -> None:
    r = await api.client.post(
        "/v1/streams", json={"id": stream, "channel": channel}, headers=t.admin
    )
    assert r.status_code == 201, r.text


async def _stats(api: Api, headers: dict[str, str], **params: str) -> dict[str, Any]:
    r = await api.client.get("/v1/stats", params=params or two_days(), headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _happenings(api: Api, t: Tenant) -> str:
    """Moderation, live frames, alerts, stops, decisions and a correction in tenant
    ``t``; the id of the person who decided (an admin named :data:`HOSTILE_NAME`)."""
    c = api.client
    # synchronous calls: allow, block, review, and review again (queued for people)
    allowed = await _moderate(api, t, jpeg("skimage-astronaut"), "codes-only")
    assert allowed.json()["decision"] == "allow"
    spam = qr_on_photo(BLOCKED_URL)
    assert (await _moderate(api, t, spam, "codes-only")).json()["decision"] == "block"
    assert (await _moderate(api, t, spam, "codes-review")).json()["decision"] == "review"
    queued = await _moderate(
        api, t, qr_on_photo(BLOCKED_URL, "skimage-chelsea"), "codes-review", review="true"
    )
    upload_item = queued.headers["bastion-review-id"]
    # a job: blocked
    r = await c.post(
        "/v1/jobs",
        params={"policy": "codes-only"},
        content=qr_on_photo(BLOCKED_URL, "skimage-rocket"),
        headers={**t.admin, "Content-Type": "image/png"},
    )
    assert r.status_code in (200, 201, 202), r.text
    job = await wait_for(c, r.json()["id"], {"succeeded", "failed"}, headers=t.admin)
    assert job["status"] == "succeeded" and job["result"]["decision"] == "block", job
    # live: a review rule on one stream, an auto-stop rule on another
    for rules in (WATCH_RULES, HALT_RULES):
        r = await c.post(
            "/v1/rules", content=rules, headers={**t.admin, "Content-Type": "application/yaml"}
        )
        assert r.status_code in (200, 201), r.text
    await _stream(api, t, "watch-1", "watch-a")
    fired = await _push(api, t, "watch-1", spam, 0)
    assert [m["rule"] for m in fired["matches"]] == ["spam-review"]
    assert (await _push(api, t, "watch-1", jpeg("skimage-astronaut"), 2000))["matches"] == []
    await _stream(api, t, "halt-1", "halt-me")
    halted = await _push(api, t, "halt-1", spam, 0)
    assert halted["stopped"] is True and halted["result"]["decision"] == "block"
    for stream, channel in (("watch-2", "watch-b"), ("watch-3", "watch-c")):
        await _stream(api, t, stream, channel)
    assert (await c.post("/v1/streams/watch-2/stop", headers=t.admin)).status_code == 200
    assert (await c.delete("/v1/streams/watch-3", headers=t.admin)).status_code == 200
    # people: a person approves the alert's item, a key escalates the upload's, and a
    # correction (through the API) says the job was fine
    items = (await c.get("/v1/reviews", params={"source": "alert"}, headers=t.reader)).json()
    (alert_item,) = [i for i in items["items"] if i["source"] == "alert"]
    svc = api.services
    person = await asyncio.to_thread(
        svc.accounts.create_user,
        t.id,
        "ada",
        "pw-" + "x7Q!" * 6,
        "admin",
        display_name=HOSTILE_NAME,
    )
    await asyncio.to_thread(
        svc.review.decide,
        t.id,
        alert_item["id"],
        Reviewer("user", person.id, admin=True),
        "approve",
    )
    r = await c.post(
        f"/v1/reviews/{upload_item}/decide", json={"action": "escalate"}, headers=t.admin
    )
    assert r.status_code == 200, r.text
    r = await c.post(
        "/v1/corrections", json={"job_id": job["id"], "decision": "allow"}, headers=t.admin
    )
    assert r.status_code in (200, 201), r.text
    return person.id


@pytest.mark.models
async def test_stats_count_what_happened(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    async with running(settings, engine) as api:
        a, b = await _tenant(api), await _tenant(api)
        person = await _happenings(api, a)
        await _moderate(api, b, jpeg("skimage-coffee"), "codes-only")

        stats = await _stats(api, a.reader)
        assert (stats["tenant_id"], stats["from"], stats["to"]) == (a.id, *two_days().values())
        assert [d["day"] for d in stats["days"]] == list(two_days().values())
        totals = stats["totals"]
        assert totals["analysed"] == {"api": 4, "job": 1, "live": 3}
        assert totals["automatic_by_source"] == {
            "api": {"allow": 1, "review": 2, "block": 1},
            "job": {"allow": 0, "review": 0, "block": 1},
            "live": {"allow": 1, "review": 1, "block": 1},
        }
        assert totals["automatic"] == {"allow": 2, "review": 3, "block": 3}
        assert totals["people"] == {"allow": 2, "block": 0, "escalate": 1}
        assert totals["people_by_source"] == {"moderator": 2, "api": 1}
        assert totals["alerts"] == {"spam-review": 1, "spam-stop": 1}
        assert totals["streams_stopped"] == {"rule": 1, "person": 0, "api": 1, "ended": 1}
        waited = totals["time_to_decision"]
        # the approved alert item waited; the escalated one is not decided, and the item
        # the correction made (of a blocked job) never waited
        assert waited["decided"] == 1 and 0 <= waited["p50_s"] <= waited["p95_s"] < 600
        # every count is on one of the two days, and the days add up to the totals
        for metric in ("analysed", "alerts", "streams_stopped", "people"):
            summed: dict[str, int] = {}
            for day in stats["days"]:
                for key, n in day[metric].items():
                    summed[key] = summed.get(key, 0) + n
            assert {k: v for k, v in summed.items() if v} == {
                k: v for k, v in totals[metric].items() if v
            }
        assert stats["rules"] == [
            {"rule": "spam-stop", "alerts": 1, "auto_stops": 1},
            {"rule": "spam-review", "alerts": 1, "auto_stops": 0},
        ]
        by_actor = {m["actor"]: m for m in stats["moderators"]}
        assert by_actor[f"user:{person}"] | {"actor": "-"} == {
            "actor": "-",
            "name": HOSTILE_NAME,
            "allow": 1,
            "block": 0,
            "escalate": 0,
            "total": 1,
        }
        (key_actor,) = [m for m in stats["moderators"] if m["actor"].startswith("key:")]
        assert (key_actor["allow"], key_actor["escalate"], key_actor["total"]) == (1, 1, 2)

        # tenants never see each other's counts
        other = await _stats(api, b.admin)
        assert other["tenant_id"] == b.id
        assert other["totals"]["analysed"] == {"api": 1, "job": 0, "live": 0}
        assert other["totals"]["automatic"] == {"allow": 1, "review": 0, "block": 0}
        assert other["totals"]["people"] == {"allow": 0, "block": 0, "escalate": 0}
        assert other["totals"]["alerts"] == {} and other["moderators"] == other["rules"] == []
        assert (await _stats(api, a.reader))["totals"]["analysed"]["api"] == 4

        # the same as CSV: one row per day and metric, the same rows every day
        r = await api.client.get("/v1/stats.csv", params=two_days(), headers=a.reader)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("attachment;") and f"bastion-stats-{a.id}-" in disposition
        table = list(csv.reader(io.StringIO(r.text)))
        assert table[0] == list(HEADER)
        first, second = two_days().values()
        day_one = [row[1:3] for row in table[1:] if row[0] == first]
        day_two = [row[1:3] for row in table[1:] if row[0] == second]
        assert day_one == day_two and len(day_one) * 2 == len(table) - 1
        assert len({tuple(k) for k in day_one}) == len(day_one)  # one row per metric and key
        values = {(row[1], row[2]): 0 for row in table[1:]}
        for row in table[1:]:
            if row[1] != "time_to_decision":
                values[(row[1], row[2])] += int(row[3])
        assert values[("analysed", "api")] == 4 and values[("analysed", "live")] == 3
        assert values[("automatic.job", "block")] == 1
        assert values[("people_source", "api")] == 1
        assert values[("alerts", "spam-stop")] == 1
        assert values[("streams_stopped", "ended")] == 1

        # the period is checked; the key needs the read scope only
        for params, code in (
            ({"from": "2026-02-30"}, "invalid_period"),
            ({"from": "2024-01-01", "to": "2026-01-01"}, "invalid_period"),
            ({"from": "yesterday"}, "invalid_request"),
        ):
            r = await api.client.get("/v1/stats", params=params, headers=a.reader)
            assert r.status_code in (400, 422), r.text
            assert r.json()["error"]["code"] in (code, "validation_failed"), r.text
        r = await api.client.get("/v1/stats")
        assert r.status_code == 401


@pytest.mark.models
async def test_counts_are_written_at_shutdown(
    engine: Engine, tmp_path: Path, database_url: str | None
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    async with running(settings, engine) as api:
        t = await _tenant(api)
        await _moderate(api, t, jpeg("skimage-astronaut"), "codes-only")
        await _moderate(api, t, jpeg("skimage-astronaut"), "codes-only")  # cached: counted
    async with running(settings, engine) as api:  # a restart: nothing was asked before it
        stats = await _stats(api, t.reader)
    assert stats["totals"]["analysed"]["api"] == 2
    assert stats["totals"]["automatic"]["allow"] == 2


# ---- the portal ----------------------------------------------------------------------


@pytest.mark.models
async def test_the_portal_shows_charts_and_the_csv_to_viewers(
    engine: Engine, tmp_path: Path
) -> None:
    async with running(portal_settings(make_settings(tmp_path)), engine) as api:
        t = await _tenant(api)
        await _moderate(api, t, jpeg("skimage-astronaut"), "codes-only")
        queued = await _moderate(api, t, qr_on_photo(BLOCKED_URL), "codes-review", review="true")
        svc = api.services
        person = await asyncio.to_thread(
            svc.accounts.create_user,
            t.id,
            "ada",
            "pw-" + "x7Q!" * 6,
            "admin",
            display_name=HOSTILE_NAME,
        )
        await asyncio.to_thread(
            svc.review.decide,
            t.id,
            queued.headers["bastion-review-id"],
            Reviewer("user", person.id, admin=True),
            "reject",
        )
        viewer = await sign_in(api, "viewer", tenant=t.id)
        client = viewer.client
        try:
            r = await client.get("/portal/stats", params=two_days())
            assert r.status_code == 200, r.text
            page = r.text
            for chart in ("analysed", "automatic", "people", "alerts", "stopped", "wait"):
                assert f'id="chart-{chart}"' in page
            assert page.count("<svg") >= 6 and "<title" in page and "<rect" in page
            assert " style=" not in page and "<script>" not in page.replace('<script src="', "")
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Ada" in page
            assert f'href="/portal/stats.csv?from={two_days()["from"]}&amp;to=' in page
            assert re.search(r'id="total-analysed">2<', page), "two items analysed"
            assert re.search(r'id="total-people">1<', page)

            r = await client.get("/portal/stats.csv", params=two_days())
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/csv")
            assert r.headers["content-disposition"].startswith("attachment;")
            assert r.text.splitlines()[0] == ",".join(HEADER)

            r = await client.get("/portal/stats", params={"from": "2026-02-30"})
            assert r.status_code == 400
            assert 'data-code="invalid_period"' in r.text and 'name="from"' in r.text
        finally:
            await client.aclose()

        r = await api.client.get("/portal/stats", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/portal/login?next=/portal/stats")
        r = await api.client.get("/portal/stats.csv", follow_redirects=False)
        assert r.status_code == 303


@pytest.mark.browser
@pytest.mark.models
@pytest.mark.server
async def test_the_statistics_page_in_a_browser(engine: Engine, tmp_path: Path) -> None:
    async with portal(make_settings(tmp_path), engine) as shown:
        api = shown.api
        t = await _tenant(api)
        await _happenings(api, t)
        # earlier days of traffic, counted as a process counts them, for a month to show
        counter = api.services.moderation.counter
        today, rng, seeded = utc_today(), random.Random(7), 0
        for back in range(1, 30):
            day = today - timedelta(days=back)
            busy = 1.4 if day.weekday() >= 5 else 1.0
            for source, usual in (("api", 60), ("live", 140)):
                counts = {
                    "allow": int(usual * busy * rng.uniform(0.7, 1.3)),
                    "review": rng.randint(2, 12),
                    "block": rng.randint(1, 9),
                }
                for decision, n in counts.items():
                    counter.add(t.id, f"moderated.{source}", decision, n, day=day)
                    seeded += n
        page = await shown.signed_in("viewer", "/portal/stats", tenant=t.id)
        await page.wait_for_selector("#chart-analysed svg")
        assert await page.locator("#chart-analysed rect").count() >= 29
        assert await page.locator("#chart-wait circle").count() >= 1
        assert await page.text_content("#total-analysed") == str(8 + seeded)
        names = await page.locator("#moderators tbody th").all_text_contents()
        assert HOSTILE_NAME in names
        await screenshot(page, "statistics")
        async with page.expect_download() as download:
            await page.click("#stats-csv")
        saved = await (await download.value).path()
        assert saved is not None and Path(saved).read_text().startswith(",".join(HEADER))
