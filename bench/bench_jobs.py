"""Benchmark of async jobs: embedded queue (SQLite) vs RabbitMQ + PostgreSQL, side by side.

For each backend a real `bastion up` process (API + one in-process worker + the webhook
dispatcher) runs on loopback, and a webhook receiver in this process records when each
job's signed callback arrives.

  (a) fixed load: jobs submitted at --rate jobs/s for --seconds s; callback lag = time from
      the POST /v1/jobs answer to the callback's arrival (p50/p99);
  (b) sustained: --burst jobs submitted at once by 8 clients; jobs/s = jobs / time from
      the first submission to the last callback.

Jobs use a policy running only the `hashes` analyzer (a few ms per image), so the figures
are those of the queue, the database and the webhook delivery, not of the models.

    .venv/bin/python -m bench.bench_jobs [--rate 5] [--seconds 30] [--burst 300]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from tests.support.databases import (
    delete_rabbit_queues,
    pg_available,
    pg_schema,
    rabbit_available,
)
from tests.support.webhooks import Receiver

from bench.common import BENCH_KEY, images, machine, server

HASHES_ONLY = """name: hashes-only
description: perceptual hashes only, so a job costs a few milliseconds of analysis
analyzers: [hashes]
rules: []
"""


def arrivals(receiver: Receiver) -> dict[str, float]:
    """When each job's first callback arrived (time.time()), by job id."""
    return {job_id: calls[0].at for job_id, calls in receiver.by_job().items()}


async def wait_callbacks(receiver: Receiver, job_ids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not job_ids <= set(arrivals(receiver)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(job_ids - set(arrivals(receiver)))} callbacks missing")
        await asyncio.sleep(0.05)


@dataclass
class Run:
    backend: str
    load: str
    submitted: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def lags_ms(self, receiver: Receiver) -> list[float]:
        arrived = arrivals(receiver)
        return [(arrived[j] - t) * 1000 for j, t in self.submitted.items()]

    def row(self, receiver: Receiver, baseline: float | None) -> str:
        lags = self.lags_ms(receiver)
        rate = len(self.submitted) / self.seconds
        ratio = f"{rate / baseline:.2f}×" if baseline else "—"
        return (
            f"| {self.backend} | {self.load} | {len(self.submitted)} | {rate:.1f} | "
            f"{np.percentile(lags, 50):.0f} | {np.percentile(lags, 99):.0f} | {ratio} |"
        )


async def submit(
    c: httpx.AsyncClient, data: bytes, callback: str, run: Run, sem: asyncio.Semaphore
) -> None:
    async with sem:
        r = await c.post(
            "/v1/jobs",
            content=data,
            params={"callback_url": callback, "policy": "hashes-only"},
            headers={"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "image/jpeg"},
        )
        r.raise_for_status()
        run.submitted[r.json()["id"]] = time.time()


async def fixed_load(
    base: str, datas: list[bytes], receiver: Receiver, name: str, rate: float, seconds: float
) -> Run:
    run = Run(name, f"fixed {rate:g} jobs/s for {seconds:g} s")
    sem = asyncio.Semaphore(64)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        start = time.monotonic()
        tasks = []
        for i in range(round(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            data = datas[i % len(datas)] + uuid.uuid4().bytes  # fresh bytes: no cache hit
            tasks.append(asyncio.create_task(submit(c, data, receiver.url, run, sem)))
        await asyncio.gather(*tasks)
    await wait_callbacks(receiver, set(run.submitted), timeout=300)
    run.seconds = seconds
    return run


async def burst(base: str, datas: list[bytes], receiver: Receiver, name: str, n: int) -> Run:
    run = Run(name, f"burst of {n}, 8 clients")
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        t0 = time.time()
        await asyncio.gather(
            *(
                submit(c, datas[i % len(datas)] + uuid.uuid4().bytes, receiver.url, run, sem)
                for i in range(n)
            )
        )
    await wait_callbacks(receiver, set(run.submitted), timeout=600)
    arrived = arrivals(receiver)
    run.seconds = max(arrived[j] for j in run.submitted) - t0
    return run


@contextmanager
def backend_env(name: str) -> Iterator[dict[str, str]]:
    if name == "embedded":
        yield {}
        return
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with pg_schema() as url:
        yield {
            "BASTION_DATABASE_URL": url,
            "BASTION_JOBS__QUEUE": "rabbitmq",
            "BASTION_JOBS__RABBITMQ__PREFIX": prefix,
        }
    asyncio.run(delete_rabbit_queues(prefix))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=5.0, help="jobs/s of the fixed load")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the fixed load")
    ap.add_argument("--burst", type=int, default=300, help="jobs of the sustained run")
    args = ap.parse_args()
    backends = ["embedded"]
    if pg_available() and rabbit_available():
        backends.append("RabbitMQ + PostgreSQL")
    else:
        print("PostgreSQL or RabbitMQ not reachable: embedded only")
    datas = images(32, 640)
    receiver = Receiver(204)  # records each callback's arrival
    rows: list[tuple[Run, Run]] = []
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "hashes-only.yaml").write_text(HASHES_ONLY)
        for name in backends:
            with ExitStack() as stack:
                env = stack.enter_context(backend_env(name))
                env |= {
                    "BASTION_POLICIES_DIR": str(policies),
                    "BASTION_ALLOW_PRIVATE_URLS": "1",
                    "BASTION_JOBS__CONCURRENCY": "8",
                }
                base = stack.enter_context(server(Path(tmp) / name.split()[0], env))
                asyncio.run(burst(base, datas, receiver, name, 16))  # warm-up
                fixed = asyncio.run(
                    fixed_load(base, datas, receiver, name, args.rate, args.seconds)
                )
                sustained = asyncio.run(burst(base, datas, receiver, name, args.burst))
                rows.append((fixed, sustained))
    receiver.close()
    print(f"machine: {machine()}")
    print(
        "jobs: 640px JPEGs, policy hashes-only, one in-process worker (8 jobs at once), "
        "webhook receiver on loopback\n"
    )
    print("| backend | load | jobs | jobs/s | callback lag p50 ms | p99 ms | jobs/s ratio |")
    print("|---|---|---|---|---|---|---|")
    base_fixed = len(rows[0][0].submitted) / rows[0][0].seconds
    base_sustained = len(rows[0][1].submitted) / rows[0][1].seconds
    for fixed, sustained in rows:
        print(fixed.row(receiver, base_fixed))
        print(sustained.row(receiver, base_sustained))
    print(f"\ncallbacks received: {len(receiver.requests)} for {len(arrivals(receiver))} jobs")


if __name__ == "__main__":
    main()
