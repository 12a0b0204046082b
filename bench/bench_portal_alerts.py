"""Benchmark of alert-to-browser latency: how soon an alert raised on a pushed frame is
visible in the portal's inbox, side by side with the same alerts on the API's WebSocket.

A real ``bastion up`` process (SQLite, default feed settings: the alert feed reads
changes every 0.2 s) has one rule set for the ``bench-`` channels: a policy of the
``codes`` analyzer only and a rule that raises an alert (action ``alert``) on a URL to a
blocked domain. A moderator is signed in to ``/portal/alerts`` in Debian's Chromium
(Playwright, headless); a plain WebSocket client in this process is connected to
``/v1/alerts/ws`` with an API key. Each of --alerts trials registers a fresh pushed
stream and pushes one PNG photo with a QR code to that domain
(``POST /v1/streams/{id}/frames``), which raises one new alert; a random pause of 0–0.5 s
before each frame puts it at a random point of the feed's polling. One warm-up trial is
not counted.

Times, all on this machine's clock:
  created   the alert's ``created_at`` (the frame analysed, its rules run, the alert
            written; the transaction commits right after)
  answered  the frame's HTTP answer reached the benchmark
  (a) WS    the plain client received the alert's ``alert.created`` message (baseline)
  (b) inbox the alert's row was visible in the inbox: a MutationObserver on the rows
            notes when the row is added (pushed on the portal's WebSocket, its row then
            fetched from the portal as an htmx fragment and swapped in) and the time of
            the next animation frame, when it is painted, is taken

    .venv/bin/python -m bench.bench_portal_alerts [--alerts 100]

Target: (b) p95 < 1 s from ``created``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from playwright.async_api import Page, async_playwright
from tests.support.browser import CHROMIUM_ARGS
from tests.support.media import qr_on_photo
from tests.support.rules import BLOCKED_DOMAIN
from websockets.asyncio.client import ClientConnection, connect

from bench.common import BENCH_KEY, machine, server

AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}
WAIT_S = 10.0

QR_ONLY = """\
name: qr-only
description: QR codes and barcodes only, so a frame costs a few milliseconds of analysis
analyzers: [codes]
rules: []
"""

ALERT_RULES = f"""\
name: portal-bench
description: the benchmark's pushed streams
channel_pattern: "^bench-"
priority: 10
sample_interval_s: 1
policy: qr-only
rules:
  - name: spam-domain
    urls: {{domains: [{BLOCKED_DOMAIN}]}}
    action: alert
"""

# Notes when each alert row is added to the inbox, and when the next frame is painted.
OBSERVE = """
() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__added = {};
  window.__painted = {};
  const list = document.getElementById("alert-list");
  new MutationObserver((records) => {
    const at = now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        const id = node.nodeType === 1 && node.dataset ? node.dataset.alert : null;
        if (!id || id in window.__added) continue;
        window.__added[id] = at;
        requestAnimationFrame(() => { window.__painted[id] = now(); });
      }
    }
  }).observe(list, { childList: true });
}
"""


def chromium() -> str:
    path = os.environ.get("BASTION_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise SystemExit("Chromium is not installed (apt-get install chromium)")
    return path


@dataclass
class Trial:
    alert_id: str
    answered: float
    created: float | None = None
    ws: float | None = None
    added: float | None = None
    painted: float | None = None


@dataclass
class Feed:
    """What the plain WebSocket client received: alert id → (arrival, created_at)."""

    got: dict[str, tuple[float, float]] = field(default_factory=dict)

    async def read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            arrived = time.time()
            message = json.loads(raw)
            if message.get("type") == "alert.created":
                alert = message["alert"]
                created = datetime.fromisoformat(alert["created_at"].replace("Z", "+00:00"))
                self.got.setdefault(alert["id"], (arrived, created.timestamp()))


def create_user(data_dir: Path, username: str, password: str) -> None:
    """A moderator of the default tenant, made with `bastion users create`."""
    subprocess.run(
        [
            sys.executable, "-m", "bastion.cli", "users", "create",
            "--username", username, "--role", "moderator", "--password-stdin",
            "--data-dir", str(data_dir),
        ],
        input=(password + "\n").encode(),
        check=True,
        capture_output=True,
        env={**os.environ, "BASTION_LOG_LEVEL": "WARNING"},
    )  # fmt: skip


async def sign_in(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/portal/login?next=/portal/alerts")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    if not page.url.endswith("/portal/alerts"):
        raise RuntimeError(f"signing in failed: {page.url}")
    await page.wait_for_selector("#push-state.on", state="attached", timeout=10_000)
    await page.evaluate(OBSERVE)


async def trial(
    client: httpx.AsyncClient, page: Page, feed: Feed, stream_id: str, frame: bytes
) -> Trial:
    spec = {"id": stream_id, "channel": stream_id}
    (await client.post("/v1/streams", json=spec)).raise_for_status()
    reply = await client.post(
        f"/v1/streams/{stream_id}/frames", content=frame, headers={"Content-Type": "image/png"}
    )
    answered = time.time()
    reply.raise_for_status()
    ids = reply.json()["alert_ids"]
    if len(ids) != 1:
        raise RuntimeError(f"the frame raised {len(ids)} alerts: {reply.text[:500]}")
    result = Trial(ids[0], answered)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        painted = await page.evaluate("(id) => window.__painted[id] || null", result.alert_id)
        if painted is not None and result.alert_id in feed.got:
            result.painted = painted / 1000
            result.added = await page.evaluate("(id) => window.__added[id]", result.alert_id) / 1000
            break
        await asyncio.sleep(0.02)
    if result.alert_id in feed.got:
        result.ws, result.created = feed.got[result.alert_id]
    return result


async def run(alerts: int) -> tuple[list[Trial], str]:
    frame = qr_on_photo(f"https://{BLOCKED_DOMAIN}/live")
    pause = random.Random(11)
    username, password = "bench-moderator", "pw-" + secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="bastion-bench-portal-") as tmp:
        root = Path(tmp)
        (root / "policies").mkdir()
        (root / "policies" / "qr-only.yaml").write_text(QR_ONLY)
        await asyncio.to_thread(create_user, root / "data", username, password)
        env = {
            "BASTION_POLICIES_DIR": str(root / "policies"),
            "BASTION_ACCOUNTS__COOKIE_SECURE": "0",  # plain HTTP on loopback
        }
        with server(root / "data", env) as base:
            async with (
                httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as client,
                async_playwright() as pw,
            ):
                rules = {"Content-Type": "application/yaml"}
                (
                    await client.post("/v1/rules", content=ALERT_RULES, headers=rules)
                ).raise_for_status()
                browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
                version = browser.version
                context = await browser.new_context(viewport={"width": 1400, "height": 900})
                page = await context.new_page()
                await sign_in(page, base, username, password)
                ws_url = base.replace("http://", "ws://") + "/v1/alerts/ws"
                feed = Feed()
                async with connect(ws_url, additional_headers=AUTH) as ws:
                    reader = asyncio.create_task(feed.read(ws))
                    try:
                        await trial(client, page, feed, "bench-warmup", frame)
                        trials = []
                        for i in range(alerts):
                            await asyncio.sleep(pause.random() * 0.5)
                            trials.append(await trial(client, page, feed, f"bench-{i:03d}", frame))
                    finally:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await reader
                await browser.close()
    return trials, version


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "–"


def report(trials: list[Trial]) -> str:
    got = [t for t in trials if t.created is not None and t.painted is not None]
    ws = [t.ws - t.created for t in got if t.ws is not None and t.created is not None]
    seen = [t.painted - t.created for t in got if t.painted is not None and t.created is not None]
    added = [t.added - t.created for t in got if t.added is not None and t.created is not None]
    ws_answer = [t.ws - t.answered for t in got if t.ws is not None]
    seen_answer = [t.painted - t.answered for t in got if t.painted is not None]
    lines = [
        "| measurement | alerts | from created_at p50 / p95 / max ms | "
        "from the frame's answer p50 / p95 ms | p95 / (a) p95 |",
        "|---|---|---|---|---|",
    ]
    base95 = float(np.percentile(ws, 95)) if ws else float("nan")
    for name, values, after in (
        ("(a) API WebSocket `/v1/alerts/ws`, plain client (baseline)", ws, ws_answer),
        ("(b) portal inbox, row added to the DOM", added, None),
        ("(b) portal inbox, row painted (visible)", seen, seen_answer),
    ):
        ratio = float(np.percentile(values, 95)) / base95 if values and base95 else float("nan")
        answer = f"{pct(after, 50)} / {pct(after, 95)}" if after is not None else "–"
        lines.append(
            f"| {name} | {len(values)} | {pct(values, 50)} / **{pct(values, 95)}** / "
            f"{max(values) * 1000 if values else float('nan'):.0f} | {answer} | {ratio:.2f}× |"
        )
    missed = len(trials) - len(got)
    if missed:
        lines.append(f"\n{missed} of {len(trials)} alerts were not seen within {WAIT_S:g} s.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--alerts", type=int, default=100, help="alerts measured")
    args = ap.parse_args()
    trials, version = asyncio.run(run(args.alerts))
    print(f"command: python -m bench.bench_portal_alerts --alerts {args.alerts}")
    print(f"machine: {machine()}, Chromium {version} (headless)")
    print(
        "server: a `bastion up` process (SQLite, alert feed polling every 0.2 s), policy of "
        "the codes analyzer only, one PNG with a QR code pushed per fresh stream\n"
    )
    print(report(trials))


if __name__ == "__main__":
    main()
