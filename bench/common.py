"""Helpers shared by the benchmarks: test images, a server subprocess, statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from tests.support.loopback import free_port
from tests.support.media import benign_photos, encode, opencv_doc_photos

BENCH_KEY = "bench-admin-key-0123456789abcdef"


def images(count: int, side: int = 640) -> list[bytes]:
    """``count`` distinct JPEGs (~side px wide) from the offline photo sets."""
    rgbs = list(benign_photos().values())
    for p in opencv_doc_photos():
        with Image.open(p) as im:
            rgbs.append(np.asarray(im.convert("RGB")))
    out = []
    for i in range(count):
        img = Image.fromarray(rgbs[i % len(rgbs)])
        scale = side / max(img.size)
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        out.append(encode(np.asarray(img), "JPEG", quality=85 + (i // len(rgbs)) % 10))
    return out


@dataclass
class Stats:
    name: str
    n: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def row(self, baseline: Stats | None = None) -> str:
        ratio = f"{self.rate / baseline.rate:.2f}×" if baseline and baseline.rate else "—"
        return (
            f"| {self.name} | {self.n} | {self.rate:.1f} | {self.pct(50):.0f} | "
            f"{self.pct(95):.0f} | {ratio} |"
        )


HEADER = "| measurement | images | images/s | p50 ms | p95 ms | ratio |\n|---|---|---|---|---|---|"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


@contextlib.contextmanager
def server(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `bastion up` process on loopback; yields its base URL."""
    with server_process(data_dir, extra_env) as (base, _):
        yield base


@contextlib.contextmanager
def server_process(
    data_dir: Path, extra_env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`server`, yielding the process too; its stderr goes to ``log`` when given."""
    port = free_port()
    env = {
        **os.environ,
        "BASTION_ADMIN_API_KEY": BENCH_KEY,
        "BASTION_RESULT_CACHE_SIZE": "0",
        "BASTION_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    sink = log.open("ab") if log is not None else None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.cli",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if sink is None else sink,
    )
    if sink is not None:
        sink.close()  # the server has its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                told = log.read_text(errors="replace")[-4000:] if log else ""
                raise RuntimeError(
                    f"server exited: {proc.stderr.read().decode() if proc.stderr else told}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("server did not become ready")
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
