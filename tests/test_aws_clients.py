"""The Rekognition-compatible endpoint with the other real clients: the AWS CLI
(``aws rekognition detect-moderation-labels --image-bytes fileb://...``) and the AWS SDK
for JavaScript v3 (``@aws-sdk/client-rekognition`` from npm, run with Node): a success
whose labels are Bastion's result in Rekognition's names, and a typed error.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bastion.aws import taxonomy
from bastion.jobs.config import JobsConfig
from bastion.pipeline.engine import Engine
from tests.support.app import ServedApi, Tenant, serving
from tests.support.aws import AwsKey, new_aws_key
from tests.support.media import opencv_doc_photos, photo
from tests.support.settings import make_settings

pytestmark = [pytest.mark.models, pytest.mark.server]

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
AWS_CLI = Path(sys.executable).parent / "aws"
REGION = "us-east-1"


@dataclass
class Rig:
    served: ServedApi
    tenant: Tenant
    key: AwsKey


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(engine: Engine, data_root: Path) -> AsyncIterator[Rig]:
    settings = make_settings(data_root / "aws-clients", jobs=JobsConfig(run_worker=False))
    async with serving(settings, engine) as served:
        tenant = await served.new_tenant()
        key = await new_aws_key(served, tenant.headers)
        yield Rig(served, tenant, key)


def labelled_photo() -> bytes:
    """The suite's photo with the strongest moderation labels (opencv-doc's box of
    biscuits), or a plain photo where opencv-doc is not installed."""
    for path in opencv_doc_photos():
        if path.stem == "box":
            return path.read_bytes()
    return photo("skimage-coffee")


async def expected_labels(rig: Rig, data: bytes, min_confidence: float) -> list[dict[str, Any]]:
    """Bastion's own result for ``data`` in Rekognition's names, as DetectModerationLabels
    must answer them."""
    r = await rig.served.client.post("/v1/moderate", content=data, headers=rig.tenant.headers)
    assert r.status_code == 200, r.text
    labels = r.json()["labels"]
    return [
        {
            "Confidence": s.confidence,
            "Name": s.label.name,
            "ParentName": s.label.parent,
            "TaxonomyLevel": s.label.level,
        }
        for s in taxonomy.to_v7((lab["name"], lab["confidence"]) for lab in labels)
        if s.confidence >= min_confidence
    ]


async def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command without blocking the event loop the served app runs on."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


# -- the AWS CLI --------------------------------------------------------------------------------


def cli_env(key: AwsKey, tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI that knows nothing but ``key``: no AWS variables of this
    machine, empty config and credentials files."""
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("")
    credentials.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key.id,
        AWS_SECRET_ACCESS_KEY=key.secret,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    return env


async def test_aws_cli_detect_moderation_labels(rig: Rig, tmp_path: Path) -> None:
    assert AWS_CLI.is_file(), "the AWS CLI is installed with the test extras (awscli)"
    data = labelled_photo()
    image = tmp_path / "image.jpg"
    image.write_bytes(data)
    env = cli_env(rig.key, tmp_path)
    command = [
        str(AWS_CLI),
        "rekognition",
        "detect-moderation-labels",
        "--endpoint-url",
        rig.served.base,
        "--region",
        REGION,
        "--output",
        "json",
    ]
    done = await run(
        *command, "--image-bytes", f"fileb://{image}", "--min-confidence", "0", env=env
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["ModerationModelVersion"] == "7.0"
    assert answer["ModerationLabels"] == await expected_labels(rig, data, 0)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"%PDF-1.4 not an image")
    failed = await run(*command, "--image-bytes", f"fileb://{broken}", env=env)
    assert failed.returncode in (254, 255), (failed.returncode, failed.stderr)  # v2, v1
    assert "(InvalidImageFormatException)" in failed.stderr, failed.stderr
    assert "DetectModerationLabels operation" in failed.stderr

    wrong = cli_env(AwsKey(rig.key.id, "not-the-secret-" + "x" * 25), tmp_path)
    refused = await run(*command, "--image-bytes", f"fileb://{image}", env=wrong)
    assert refused.returncode in (254, 255)
    assert "(InvalidSignatureException)" in refused.stderr, refused.stderr


# -- the AWS SDK for JavaScript v3 ------------------------------------------------------------


async def js_sdk() -> None:
    """tests/js's packages installed (``npm ci`` from its lock file when missing); skips
    only where Node or npm is not installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed")
    if (JS / "node_modules" / "@aws-sdk" / "client-rekognition").is_dir():
        return
    done = await run(npm, "ci", "--prefix", str(JS), "--no-audit", "--no-fund")
    assert done.returncode == 0, done.stderr


async def test_aws_sdk_for_javascript(rig: Rig, tmp_path: Path) -> None:
    await js_sdk()
    data = labelled_photo()
    image = tmp_path / "image.jpg"
    image.write_bytes(data)
    node = shutil.which("node")
    assert node is not None
    done = await run(
        node, str(JS / "rekognition.mjs"), rig.served.base, rig.key.id, rig.key.secret, str(image)
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["modelVersion"] == "7.0"
    assert out["requestId"]
    assert out["labels"] == await expected_labels(rig, data, 0)
    error = out["error"]
    assert error["name"] == "InvalidImageFormatException" and error["instance"] is True, error
    assert error["status"] == 400
