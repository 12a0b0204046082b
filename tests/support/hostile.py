"""Support for hostile-input tests: a probe that proves the process stays responsive, and
the documents that attack it (deep JSON, YAML alias bombs, catastrophic regexes).

Every hostile test wraps its attack in :func:`responsive`: while the attack runs, a
second task asks ``/healthz`` every few milliseconds through the same app, and the
test fails if any answer took longer than the bound (100 ms by default). In process
(``httpx.ASGITransport``) the app shares the test's event loop, so any work that holds
the loop or the interpreter (parsing, regexes, decoding) shows up as a slow answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

HEALTH_BOUND_S = 0.1


@dataclass
class Probe:
    """Latencies of the ``/healthz`` answers seen while the attack ran."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


@asynccontextmanager
async def responsive(
    client: httpx.AsyncClient, bound_s: float = HEALTH_BOUND_S, every_s: float = 0.01
) -> AsyncIterator[Probe]:
    """Ask ``/healthz`` all the while the body runs; fail when one answer was slower
    than ``bound_s`` or not 200. At least a few probes always run, so a quick attack
    is still measured."""
    probe = Probe()
    done = asyncio.Event()

    async def ping() -> None:
        while not done.is_set() or len(probe.latencies) < 3:
            started = time.perf_counter()
            try:
                r = await client.get("/healthz")
                if r.status_code != 200:
                    probe.failures.append(f"/healthz answered {r.status_code}")
            except httpx.HTTPError as exc:
                probe.failures.append(f"/healthz failed: {exc!r}")
            probe.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(ping())
    await asyncio.sleep(0)
    try:
        yield probe
    finally:
        done.set()
        await task
    assert not probe.failures, probe.failures
    assert probe.worst < bound_s, (
        f"/healthz took {probe.worst * 1000:.0f} ms during the attack (bound "
        f"{bound_s * 1000:.0f} ms; {len(probe.latencies)} probes)"
    )


def nested_json(depth: int, kind: str = "list") -> str:
    """A JSON text nested ``depth`` levels deep (lists or objects)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def yaml_alias_bomb(depth: int, fan: int = 9) -> str:
    """The 'billion laughs' YAML: each level refers to the previous one ``fan`` times."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, depth + 1):
        refs = ", ".join([f"*a{level - 1}"] * fan)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def catastrophic_regexes() -> list[tuple[str, str]]:
    """(pattern, subject) pairs that take exponential time in a backtracking engine."""
    n = 30
    return [
        (r"^(a+)+$", "a" * n + "!"),
        (r"^(a|a)*$", "a" * n + "!"),
        (r"^(a|aa)+$", "a" * n + "!"),
        (r"(x+x+)+y", "x" * n),
        (r"^(\w+\s?)*$", "word " * 12 + "!"),
        (r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+$", "a" * n + "!"),
    ]
