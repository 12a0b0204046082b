"""The `bastion` command: scan, analyzers, policy validate, and `up` as a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import qrcode
from PIL import Image
from typer.testing import CliRunner

from bastion.cli import app
from tests.support.loopback import free_port
from tests.support.media import benign_photos, encode

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("scan")
    photos = benign_photos()
    for name in ("skimage-chelsea", "skimage-coffee", "sklearn-china"):
        (d / f"{name}.jpg").write_bytes(encode(photos[name]))
    (d / "sub").mkdir()
    (d / "sub" / "rocket.png").write_bytes(encode(photos["skimage-rocket"], "PNG"))
    (d / "notes.txt").write_text("not an image")
    return d


def qr_file(path: Path, payload: str) -> Path:
    base = Image.fromarray(benign_photos()["skimage-astronaut"]).copy()
    base.paste(qrcode.make(payload).get_image().convert("RGB").resize((200, 200)), (10, 10))
    path.write_bytes(encode(np.asarray(base), "PNG"))
    return path


@pytest.mark.models
def test_scan_folder_prints_one_json_line_per_image(images: Path) -> None:
    res = runner.invoke(app, ["scan", str(images)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert sorted(Path(r["file"]).name for r in rows) == [
        "rocket.png",
        "skimage-chelsea.jpg",
        "skimage-coffee.jpg",
        "sklearn-china.jpg",
    ]
    assert all(r["result"]["decision"] == "allow" for r in rows)


@pytest.mark.models
def test_scan_glob_errors_and_table(images: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((images / "skimage-chelsea.jpg").read_bytes()[:500])
    res = runner.invoke(
        app, ["scan", str(images / "*.jpg"), str(bad), "--format", "table"], env={"COLUMNS": "250"}
    )
    assert res.exit_code == 0, res.output
    assert "skimage-coffee.jpg" in res.stdout and "corrupt_media" in res.stdout


@pytest.mark.models
def test_scan_exits_1_on_block(tmp_path: Path) -> None:
    img = qr_file(tmp_path / "ad.png", "https://buy.badpills.example/now")
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "name: p\nanalyzers: [codes]\nrules:\n  - categories: [Blocked Domain]\n"
        "    block: 50\nlists:\n  blocked_domains: [badpills.example]\n"
    )
    res = runner.invoke(app, ["scan", str(img), "--policy", str(policy)])
    assert res.exit_code == 1, res.output
    row = json.loads(res.stdout.splitlines()[0])
    assert row["result"]["decision"] == "block"
    res = runner.invoke(app, ["scan", str(img), "--policy", str(policy), "--no-fail-on-block"])
    assert res.exit_code == 0


def test_analyzers_lists_versions_and_categories() -> None:
    res = runner.invoke(app, ["analyzers", "--json"])
    assert res.exit_code == 0, res.output
    infos = {i["name"]: i for i in json.loads(res.stdout)}
    assert {"nsfw", "labels", "ocr", "codes", "faces", "hashes"} <= set(infos)
    assert "Firearms" in infos["labels"]["categories"]
    assert all(i["version"] for i in infos.values())


def test_policy_validate_reports_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nanalyzers: [nsfw]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nanalyzers: [nsfw]\nrules:\n  - categories: [Nope]\n    block: 5\n")
    assert runner.invoke(app, ["policy", "validate", str(good)]).exit_code == 0
    res = runner.invoke(app, ["policy", "validate", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:4:" in res.output and "unknown category" in res.output


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_PRELOAD"] = "false"
    return subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("server did not start")


@pytest.mark.server
@pytest.mark.models
def test_up_prints_an_admin_key_once_and_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path / "data", port)
    try:
        _wait(port, proc)
        assert proc.stdout is not None
        key = proc.stdout.readline().strip()
        assert re.fullmatch(r"bst_[0-9a-f]{12}_[A-Za-z0-9_\-]+", key), key
        img = encode(benign_photos()["skimage-coffee"])
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/moderate",
            content=img,
            timeout=120,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 200 and r.json()["decision"] == "allow", r.text
        assert httpx.post(f"http://127.0.0.1:{port}/v1/moderate", content=img).status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert str((tmp_path / "data").resolve()) in err
    assert "bastion users create --username NAME --role admin" in err  # no portal user yet
    assert (tmp_path / "data" / "bastion.db").is_file()
    # second start: the key is already there, no new one is printed
    proc = _start(tmp_path / "data", port)
    try:
        _wait(port, proc)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "bst_" not in out
