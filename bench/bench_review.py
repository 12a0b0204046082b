"""Benchmark of the review queue: one moderator deciding with the keyboard in the portal,
side by side with the review API on the same server.

One real `bastion up` process on loopback (SQLite), a policy that sends images with a QR
code to a blocked domain to review, and `POST /v1/moderate?review=true` to queue the
items (the real `codes` analyzer reads each code). Then, on that server:

  (a) baseline: the review API, one httpx client with a `moderate` key, claim → decide
      one item after the other; the round trip is the two calls;
  (b) the portal's calls over httpx with a person's session cookie and CSRF token: claim
      (which answers the item's card, rendered) → decide; (b′) the decide call alone,
      what one decision costs the server behind the page;
  (c) the portal in Debian's Chromium: a moderator on the work view presses `a` for each
      item, the next key as soon as the next item is shown; the round trip is measured
      in the page, from the key press to the frame that shows the next item. The page
      claims the item after the one shown in the background, so with keys back to back
      each decide call runs alongside that claim. (c′) is the decide call as the page
      saw it. Decisions per minute are those of scripted key presses: the tool's
      ceiling, not a person's pace;
  (d) as (c), but each key waits until the page has loaded the item after the one shown,
      its image included (a person who looks at an item at least as long as that takes):
      the round trip a moderator working at a human pace gets. (c″) and (d″) are the
      decide handler's own time on the server, from its `Server-Timing` header.

Each measurement starts after --warmup items of its own.

    .venv/bin/python -m bench.bench_review [--items 100] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright
from tests.support.browser import CHROMIUM_ARGS, chromium_path
from tests.support.jobs import CODES_POLICY
from tests.support.media import qr_on_photo

from bench.common import BENCH_KEY, Stats, machine, server

REVIEW_POLICY = CODES_POLICY.replace("name: codes-only", "name: codes-review").replace(
    "block: 50", "review: 50"
)
ADMIN = {"Authorization": f"Bearer {BENCH_KEY}"}
QUEUE = "default"
LOADED = """() => {
    const state = window.BastionReview.state;
    const media = state.next ? Array.from(state.next.querySelectorAll("img")) : [];
    return !state.pending && media.every((img) => img.complete);
}"""
HEADER = (
    "| measurement | decisions | decisions/min | p50 ms | p95 ms | ratio to (a) |\n"
    "|---|---|---|---|---|---|"
)


def row(stats: Stats, baseline: Stats) -> str:
    """A table row in decisions per minute, with the ratio to the baseline's rate."""
    per_min = stats.rate * 60
    ratio = stats.rate / baseline.rate if baseline.rate else float("nan")
    return (
        f"| {stats.name} | {stats.n} | {per_min:.0f} | {stats.pct(50):.1f} | "
        f"{stats.pct(95):.1f} | {ratio:.2f}× |"
    )


async def queue_items(c: httpx.AsyncClient, first: int, count: int) -> list[str]:
    """``count`` distinct images sent to review by the policy; their item ids."""
    ids = []
    for n in range(first, first + count):
        r = await c.post(
            "/v1/moderate",
            params={"policy": "codes-review", "review": "true"},
            content=qr_on_photo(f"https://evil.example/offer/{n}"),
            headers={**ADMIN, "Content-Type": "image/png"},
        )
        r.raise_for_status()
        assert r.json()["decision"] == "review", r.text
        ids.append(r.headers["bastion-review-id"])
    return ids


async def api_claim_decide(c: httpx.AsyncClient, key: dict[str, str], count: int) -> Stats:
    """(a): claim → decide through `/v1/reviews`, ``count`` times."""
    latencies = []
    t_start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        r = await c.post("/v1/reviews/claim", json={"queue": QUEUE}, headers=key)
        r.raise_for_status()
        r = await c.post(
            f"/v1/reviews/{r.json()['id']}/decide", json={"action": "approve"}, headers=key
        )
        r.raise_for_status()
        latencies.append((time.perf_counter() - t0) * 1000)
    seconds = time.perf_counter() - t_start
    return Stats(
        "(a) review API: claim → decide, httpx, API key (baseline)", count, seconds, latencies
    )


async def portal_session(base: str, username: str, password: str) -> tuple[httpx.AsyncClient, str]:
    """A client signed in to the portal, and the session's CSRF token."""
    c = httpx.AsyncClient(base_url=base, timeout=60)
    r = await c.get("/portal/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', r.text)
    assert token, "no sign-in form"
    r = await c.post(
        "/portal/login",
        data={
            "tenant": "default",
            "username": username,
            "password": password,
            "login_csrf": token.group(1),
        },
    )
    assert r.status_code == 303, r.text
    page = await c.get("/portal/review")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert csrf, "no CSRF token on the page"
    return c, csrf.group(1)


async def portal_claim_decide(c: httpx.AsyncClient, csrf: str, count: int) -> tuple[Stats, Stats]:
    """(b): the portal's claim (which renders the item's card) → decide over httpx; and
    the decide call alone (its rate: decisions per minute of decide calls back to back)."""
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    both: list[float] = []
    decide: list[float] = []
    t_start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        r = await c.post(f"/portal/review/{QUEUE}/claim", json={}, headers=headers)
        assert r.status_code == 200, r.text
        found = re.search(r'data-item-id="(rev_[0-9a-f]+)"', r.text)
        assert found
        t1 = time.perf_counter()
        r = await c.post(
            f"/portal/review/items/{found.group(1)}/decide",
            json={"action": "approve"},
            headers=headers,
        )
        r.raise_for_status()
        t2 = time.perf_counter()
        both.append((t2 - t0) * 1000)
        decide.append((t2 - t1) * 1000)
    seconds = time.perf_counter() - t_start
    return (
        Stats(
            "(b) portal calls: claim (card) → decide, httpx, session cookie", count, seconds, both
        ),
        Stats("(b′) of which the portal's decide call", count, sum(decide) / 1000, decide),
    )


async def browser_keyboard(
    base: str, username: str, password: str, count: int, warmup: int, *, paced: bool
) -> tuple[Stats, Stats, Stats]:
    """(c) and (d): a moderator in Chromium pressing `a` for each item, the next key as
    soon as the next item is shown (``paced=False``), or once the item after it is loaded
    too (``paced=True``: a person who looks at an item for as long as the page takes to
    load the next one in the background)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            page = await context.new_page()
            await page.goto(f"{base}/portal/login?next=/portal/review/{QUEUE}/work")
            await page.fill("input[name=username]", username)
            await page.fill("input[name=password]", password)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            shown = "document.getElementById('review-work').dataset.shown"
            await page.wait_for_function(f"() => !!{shown}", timeout=30_000)

            async def decide_one(n: int) -> None:
                if paced:
                    await page.wait_for_function(LOADED)
                await page.keyboard.press("a")
                await page.wait_for_function(
                    "(n) => document.getElementById('review-work').dataset.decided === String(n)",
                    arg=n,
                    timeout=30_000,
                )

            for n in range(1, warmup + 1):
                await decide_one(n)
            t_start = time.perf_counter()
            for n in range(warmup + 1, warmup + count + 1):
                await decide_one(n)
            seconds = time.perf_counter() - t_start
            timings: list[float] = await page.evaluate("window.BastionReview.timings")
            calls: list[float] = await page.evaluate("window.BastionReview.calls")
            spent: list[float] = await page.evaluate("window.BastionReview.server")
            await context.close()
        finally:
            await browser.close()
    name = "d" if paced else "c"
    pace = "once the next item is loaded" if paced else "back to back"
    return (
        Stats(
            f"({name}) portal in Chromium, key `a` → next item shown, keys {pace}",
            count,
            seconds,
            timings[warmup:],
        ),
        Stats(
            f"({name}′) of which the decide call, as the page saw it",
            count,
            sum(calls[warmup:]) / 1000,
            calls[warmup:],
        ),
        Stats(
            f"({name}″) of which the decide handler on the server (Server-Timing)",
            count,
            sum(spent[warmup:]) / 1000,
            spent[warmup:],
        ),
    )


def create_moderator(data_dir: Path, env: dict[str, str]) -> tuple[str, str]:
    username = f"bench-{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_urlsafe(18)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion.cli",
            "users",
            "create",
            "--username",
            username,
            "--role",
            "moderator",
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=f"{password}\n".encode(),
        env=env,
        check=True,
        capture_output=True,
    )
    return username, password


async def run(
    base: str, data_dir: Path, env: dict[str, str], items: int, warmup: int
) -> list[Stats]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        r = await c.put(
            "/v1/policies/codes-review",
            content=REVIEW_POLICY,
            headers={**ADMIN, "Content-Type": "application/yaml"},
        )
        r.raise_for_status()
        r = await c.post("/v1/keys", json={"scopes": ["moderate", "read"]}, headers=ADMIN)
        r.raise_for_status()
        key = {"Authorization": f"Bearer {r.json()['key']}"}
        username, password = await asyncio.to_thread(create_moderator, data_dir, env)
        per_run = items + warmup
        t0 = time.perf_counter()
        await queue_items(c, 0, per_run)
        print(f"queued {per_run} items in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        await api_claim_decide(c, key, warmup)
        api = await api_claim_decide(c, key, items)

        await queue_items(c, per_run, per_run)
        session, csrf = await portal_session(base, username, password)
        try:
            await portal_claim_decide(session, csrf, warmup)
            portal_calls, decide_alone = await portal_claim_decide(session, csrf, items)
        finally:
            await session.aclose()

        await queue_items(c, 2 * per_run, per_run)
        fast = await browser_keyboard(base, username, password, items, warmup, paced=False)
        await queue_items(c, 3 * per_run, per_run)
        paced = await browser_keyboard(base, username, password, items, warmup, paced=True)
    return [api, portal_calls, decide_alone, *fast, *paced]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=100, help="measured decisions per run")
    ap.add_argument("--warmup", type=int, default=5, help="decisions before each measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {"BASTION_ACCOUNTS__COOKIE_SECURE": "false"}
        with server(data_dir, env) as base:
            full_env = {**os.environ, **env}
            stats = asyncio.run(run(base, data_dir, full_env, args.items, args.warmup))
    print(f"machine: {machine()}")
    print(
        f"items: {args.items} per measurement after {args.warmup} warm-up, each an image with "
        "a QR code to a blocked domain queued by POST /v1/moderate?review=true; one "
        "`bastion up` on loopback, SQLite, Chromium headless\n"
    )
    print(HEADER)
    for s in stats:
        print(row(s, stats[0]))
    print()
    for keyboard in (stats[3], stats[6]):
        verdict = "met" if keyboard.pct(95) < 150 else "NOT met"
        print(f"{keyboard.name[:3]} round trip p95 {keyboard.pct(95):.1f} ms: < 150 ms {verdict}")


if __name__ == "__main__":
    main()
