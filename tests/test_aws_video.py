"""Rekognition's stored-video operations with the real boto3 client against Bastion on a
real port: StartContentModeration / GetContentModeration and StartLabelDetection /
GetLabelDetection as Bastion video jobs on a real clip in a folder bucket, paging,
idempotency, tenants, the SNS-like notification as a signed webhook, and every raw
answer checked against botocore's service model."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from bastion.delivery.config import DeliveryConfig
from bastion.pipeline.engine import Engine
from tests.support.app import ServedApi, serving
from tests.support.auth import AUTH, bearer
from tests.support.aws import new_aws_key, rekognition
from tests.support.aws_shapes import RawResponses
from tests.support.jobs import wait_for
from tests.support.media import opencv_doc_photos
from tests.support.settings import make_settings
from tests.support.video import FPS, fitted, write_video
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.models

TOPIC = "arn:aws:sns:us-east-1:123456789012:bastion-video-done"
ROLE = "arn:aws:iam::123456789012:role/bastion-sns"
CHANNEL = {"SNSTopicArn": TOPIC, "RoleArn": ROLE}
SECONDS = 6  # the box 0-2 s and 4-6 s, a cat 2-4 s; one frame analysed per second


@dataclass
class Client:
    """A boto3 Rekognition client of one tenant, with the raw answers it received."""

    tenant: str
    headers: dict[str, str]
    rekognition: Any
    raw: RawResponses

    async def call(self, op: str, **params: Any) -> dict[str, Any]:
        """The operation through boto3 (in a thread: the server runs on this loop); the
        raw answer is asserted to conform to the service model."""
        method: Callable[..., dict[str, Any]] = getattr(self.rekognition, op)
        parsed = await asyncio.to_thread(method, **params)
        self.raw.conforming()
        assert self.raw.last.headers["x-amzn-requestid"] == parsed["ResponseMetadata"]["RequestId"]
        return parsed

    async def error(self, op: str, **params: Any) -> botocore.exceptions.ClientError:
        method: Callable[..., Any] = getattr(self.rekognition, op)
        with pytest.raises(botocore.exceptions.ClientError) as err:
            await asyncio.to_thread(method, **params)
        return err.value


@dataclass
class Setup:
    api: ServedApi
    a: Client
    b: Client
    receiver: Receiver


def clip_frames() -> Iterator[np.ndarray]:
    """1 s of a box of biscuits (the suite's photo with moderation labels), 1 s of a cat,
    1 s of the box again, at :data:`FPS` frames per second."""
    found = [p for p in opencv_doc_photos() if p.stem == "box"]
    if not found:
        pytest.skip("opencv-doc's example photos are not installed")
    box = np.asarray(Image.open(found[0]).convert("RGB").resize((320, 240)))
    cat = fitted("skimage-chelsea", (320, 240))
    for second in range(SECONDS):
        shown = cat if 2 <= second < 4 else box
        yield from [shown] * FPS


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bucket")
    (root / "clips").mkdir()
    write_video(root / "clips" / "cut.mp4", clip_frames())
    return root


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


async def _client(api: ServedApi, tenant: str) -> Client:
    r = await api.client.post("/v1/tenants", json={"id": tenant, "name": tenant}, headers=AUTH)
    assert r.status_code == 201, r.text
    headers = bearer(r.json()["admin_key"]["key"])
    client = rekognition(api.base, await new_aws_key(api, headers, name="video tests"))
    raw = RawResponses()
    raw.attach(client)
    return Client(tenant, headers, client, raw)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def setup(
    engine: Engine, data_root: Path, bucket: Path, receiver: Receiver
) -> AsyncIterator[Setup]:
    suffix = uuid.uuid4().hex[:8]
    ta, tb = f"vid-a-{suffix}", f"vid-b-{suffix}"
    aws = {
        "buckets": {
            "videos": {"kind": "folder", "path": str(bucket), "tenants": [ta]},
            "videos-b": {"kind": "folder", "path": str(bucket), "tenants": [tb]},
        },
        "topics": {TOPIC: {"url": receiver.url, "tenants": [ta]}},
    }
    settings = make_settings(
        data_root / f"aws-video-{suffix}",
        allow_private_urls=True,
        jobs={"poll_s": 0.05, "lease_s": 10, "retry_delay_s": 0.1},
        delivery=DeliveryConfig(initial_delay_s=0.05, max_delay_s=0.2, poll_interval_s=0.05),
        aws=aws,
    )
    async with serving(settings, engine, timeout=120) as api:
        yield Setup(api, await _client(api, ta), await _client(api, tb), receiver)


VIDEO = {"S3Object": {"Bucket": "videos", "Name": "clips/cut.mp4"}}


async def _finished(client: Client, op: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await client.call(op, JobId=job_id)
        if got["JobStatus"] != "IN_PROGRESS":
            return got
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.25)


async def _all_pages(client: Client, op: str, key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(1000):
        page = await client.call(op, **params, **({"NextToken": token} if token else {}))
        assert len(page[key]) <= params.get("MaxResults", 1000)
        items += page[key]
        token = page.get("NextToken")
        if token is None:
            return items
    raise AssertionError("the pages never ended")


@pytest.mark.asyncio(loop_scope="session")
async def test_content_moderation_job_with_timestamps_paging_and_notification(
    setup: Setup,
) -> None:
    a = setup.a
    started = await a.call(
        "start_content_moderation",
        Video=VIDEO,
        MinConfidence=0,
        JobTag="post-42",
        NotificationChannel=CHANNEL,
        ClientRequestToken="moderation-1",
    )
    job_id = started["JobId"]
    done = await _finished(a, "get_content_moderation", job_id)
    assert done["JobStatus"] == "SUCCEEDED", done
    assert done["JobId"] == job_id and done["JobTag"] == "post-42"
    assert done["Video"] == VIDEO
    assert done["ModerationModelVersion"] == "7.0"
    meta = done["VideoMetadata"]
    assert (meta["FrameWidth"], meta["FrameHeight"]) == (320, 240)
    assert meta["Codec"] == "h264" and meta["FrameRate"] == pytest.approx(10)
    assert 5000 <= meta["DurationMillis"] <= 6100
    labels = done["ModerationLabels"]
    assert labels, "MinConfidence 0 answers every label the analyzers gave"
    stamps = [item["Timestamp"] for item in labels]
    assert stamps == sorted(stamps) and stamps[0] >= 0 and stamps[-1] <= 6000
    # the box has moderation labels, the cat none
    assert all(not 2000 <= s < 4000 for s in stamps), stamps
    assert min(stamps) < 2000 and max(stamps) >= 4000
    for item in labels:
        label = item["ModerationLabel"]
        assert label["TaxonomyLevel"] in (1, 2, 3)
        assert (label["ParentName"] == "") == (label["TaxonomyLevel"] == 1)
    # the native job is the same job
    native = await wait_for(setup.api.client, job_id, {"succeeded"}, headers=a.headers)
    assert native["kind"] == "video" and native["options"]["rekognition"]["job_tag"] == "post-42"

    # MaxResults=1 walks every detection, one page at a time, through NextToken (botocore
    # has no paginator for the video operations: a client walks the tokens itself)
    assert not a.rekognition.can_paginate("get_content_moderation")
    walked = await _all_pages(
        a, "get_content_moderation", "ModerationLabels", JobId=job_id, MaxResults=1
    )
    assert walked == labels
    by_name = await _all_pages(
        a, "get_content_moderation", "ModerationLabels", JobId=job_id, MaxResults=2, SortBy="NAME"
    )
    assert sorted(by_name, key=lambda i: (i["ModerationLabel"]["Name"], i["Timestamp"])) == by_name
    assert sorted(map(json.dumps, by_name)) == sorted(map(json.dumps, labels))
    segments = await a.call("get_content_moderation", JobId=job_id, AggregateBy="SEGMENTS")
    assert segments["GetRequestMetadata"] == {"SortBy": "TIMESTAMP", "AggregateBy": "SEGMENTS"}
    for seg in segments["ModerationLabels"]:
        assert seg["DurationMillis"] == seg["EndTimestampMillis"] - seg["StartTimestampMillis"]
        assert seg["Timestamp"] == seg["StartTimestampMillis"]
    # a label seen on consecutive analysed frames is one segment: the cat parts them
    analysed = [f["timestamp_ms"] for f in native["result"]["frames"]]
    expected = []
    for name in sorted({i["ModerationLabel"]["Name"] for i in labels}):
        seen = [
            analysed.index(i["Timestamp"]) for i in labels if i["ModerationLabel"]["Name"] == name
        ]
        runs: list[list[int]] = []
        for at in seen:
            if runs and at == runs[-1][-1] + 1:
                runs[-1].append(at)
            else:
                runs.append([at])
        expected += [(analysed[r[0]], analysed[r[-1]], name) for r in runs]
    got = [
        (s["StartTimestampMillis"], s["EndTimestampMillis"], s["ModerationLabel"]["Name"])
        for s in segments["ModerationLabels"]
    ]
    assert got == sorted(expected) and any(s < 2000 for s, _, _ in got)
    assert any(s >= 4000 for s, _, _ in got)
    stricter = await a.call("get_content_moderation", JobId=job_id, MaxResults=1000)
    assert stricter["ModerationLabels"] == labels

    # a token is bound to its job, its sort and its aggregation
    first = await a.call("get_content_moderation", JobId=job_id, MaxResults=1)
    token = first["NextToken"]
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "garbage", "x" * 255):
        err = await a.error("get_content_moderation", JobId=job_id, NextToken=bad)
        assert err.response["Error"]["Code"] == "InvalidPaginationTokenException"
    err = await a.error("get_content_moderation", JobId=job_id, NextToken=token, SortBy="NAME")
    assert err.response["Error"]["Code"] == "InvalidPaginationTokenException"

    # the same ClientRequestToken is the same job; with other parameters it is refused
    again = await a.call(
        "start_content_moderation",
        Video=VIDEO,
        MinConfidence=0,
        JobTag="post-42",
        NotificationChannel=CHANNEL,
        ClientRequestToken="moderation-1",
    )
    assert again["JobId"] == job_id
    err = await a.error(
        "start_content_moderation", Video=VIDEO, MinConfidence=80, ClientRequestToken="moderation-1"
    )
    assert err.response["Error"]["Code"] == "IdempotentParameterMismatchException"

    # the notification: SNS's completion message, signed as every Bastion webhook
    deadline = asyncio.get_running_loop().time() + 30
    while not [r for r in setup.receiver.requests if job_id in r.body.decode()]:
        assert asyncio.get_running_loop().time() < deadline, "no notification arrived"
        await asyncio.sleep(0.1)
    delivered = next(r for r in setup.receiver.requests if job_id in r.body.decode())
    r = await setup.api.client.get("/v1/webhooks/secret", headers=a.headers)
    event = delivered.verify(r.json()["secret"])
    envelope = event["data"]
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == TOPIC
    message = json.loads(envelope["Message"])
    assert message["JobId"] == job_id and message["Status"] == "SUCCEEDED"
    assert message["API"] == "StartContentModeration" and message["JobTag"] == "post-42"
    assert message["Video"] == {"S3ObjectName": "clips/cut.mp4", "S3Bucket": "videos"}
    assert isinstance(message["Timestamp"], int)

    # another tenant's JobId is unknown to it; so is a job of the other operation
    err = await setup.b.error("get_content_moderation", JobId=job_id)
    assert err.response["Error"]["Code"] == "ResourceNotFoundException"
    err = await a.error("get_label_detection", JobId=job_id)
    assert err.response["Error"]["Code"] == "ResourceNotFoundException"
    err = await a.error("get_content_moderation", JobId="job_" + "0" * 32)
    assert err.response["Error"]["Code"] == "ResourceNotFoundException"
    # ... and another tenant's ClientRequestToken is its own
    err = await setup.b.error(
        "start_content_moderation", Video=VIDEO, ClientRequestToken="moderation-1"
    )
    assert err.response["Error"]["Code"] == "InvalidS3ObjectException"  # not its bucket


@pytest.mark.asyncio(loop_scope="session")
async def test_label_detection_job_labels_over_time(setup: Setup) -> None:
    a = setup.a
    job_id = (await a.call("start_label_detection", Video=VIDEO, MinConfidence=1, JobTag="labels"))[
        "JobId"
    ]
    done = await _finished(a, "get_label_detection", job_id)
    assert done["JobStatus"] == "SUCCEEDED", done
    labels = done["Labels"]
    assert labels and all(item["Label"]["Confidence"] >= 1 for item in labels)
    box = {i["Label"]["Name"] for i in labels if i["Timestamp"] < 2000}
    cat = {i["Label"]["Name"] for i in labels if 2000 <= i["Timestamp"] < 4000}
    assert box and cat and box != cat
    walked = await _all_pages(a, "get_label_detection", "Labels", JobId=job_id, MaxResults=1)
    assert walked == labels
    segments = await a.call("get_label_detection", JobId=job_id, AggregateBy="SEGMENTS")
    assert len(segments["Labels"]) < len(labels)  # the same label on consecutive frames
    for seg in segments["Labels"]:
        assert seg["Timestamp"] == seg["StartTimestampMillis"] <= seg["EndTimestampMillis"]
    # only one label, by name
    chosen = labels[0]["Label"]["Name"]
    only = await a.call(
        "start_label_detection",
        Video=VIDEO,
        MinConfidence=1,
        Settings={"GeneralLabels": {"LabelInclusionFilters": [chosen]}},
    )
    filtered = await _finished(a, "get_label_detection", only["JobId"])
    assert {i["Label"]["Name"] for i in filtered["Labels"]} == {chosen}


@pytest.mark.asyncio(loop_scope="session")
async def test_start_errors(setup: Setup) -> None:
    a = setup.a
    missing = {"S3Object": {"Bucket": "videos", "Name": "clips/none.mp4"}}
    err = await a.error("start_content_moderation", Video=missing)
    assert err.response["Error"]["Code"] == "InvalidS3ObjectException"
    assert "does not exist" in err.response["Error"]["Message"]
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    outside = {"S3Object": {"Bucket": "videos", "Name": "../cut.mp4"}}
    err = await a.error("start_label_detection", Video=outside)
    assert err.response["Error"]["Code"] == "InvalidS3ObjectException"
    other = {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:unmapped", "RoleArn": ROLE}
    err = await a.error("start_content_moderation", Video=VIDEO, NotificationChannel=other)
    assert err.response["Error"]["Code"] == "InvalidParameterException"
    # a mapped topic is the tenant's own
    err = await setup.b.error(
        "start_content_moderation",
        Video={"S3Object": {"Bucket": "videos-b", "Name": "clips/cut.mp4"}},
        NotificationChannel=CHANNEL,
    )
    assert err.response["Error"]["Code"] == "InvalidParameterException"
    err = await a.error("start_content_moderation", Video=VIDEO, MinConfidence=101)
    assert err.response["Error"]["Code"] == "InvalidParameterException"
